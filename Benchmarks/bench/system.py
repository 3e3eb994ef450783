"""The system under test: PostgreSQL and RabbitMQ (through scripts/servers.sh), the release binaries of the four services
and of the Replicate stand-in, each started and stopped by its own process id."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg



SERVICES = ("webhook", "scheduler", "dispatcher", "gateway")
STANDIN_TOKEN = "r8_standin_dev_token"
MODEL = "wan-video/wan-2.2-i2v-fast"  # REPLICATE_MODEL's default; the bench never sets it


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return 200 <= answer.status < 300
    except Exception:
        return False


def proc_status(pid: int) -> dict[str, int]:
    """VmHWM and VmRSS in KiB, and CPU seconds (user + system) of a live process; empty when it is gone."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0])
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        out["cpu_ms"] = int((int(fields[11]) + int(fields[12])) * 1000 / ticks)
    except (OSError, ValueError, IndexError):
        return {}
    return out


@dataclass
class Process:
    """A process this benchmark started; stopped by its own pid (and, for a process group it leads, that group)."""

    name: str
    popen: subprocess.Popen
    group: bool = False
    last_status: dict[str, int] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def sample(self) -> dict[str, int]:
        status = proc_status(self.pid)
        if status:
            self.last_status = status
        return self.last_status

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        if not self.alive():
            return
        self.sample()
        self._signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.popen.wait(timeout=10)

    def _signal(self, sig: int) -> None:
        try:
            if self.group:
                os.killpg(self.pid, sig)
            else:
                self.popen.send_signal(sig)
        except ProcessLookupError:
            pass


class Instance:
    """One benchmark instance of Reelay: ports moved by `offset`, state under `data_dir` (never the dev instance's)."""

    def __init__(self, root: Path, offset: int, data_dir: Path):
        self.root = root
        self.offset = offset
        self.data_dir = data_dir
        self.gateway_port = 8080 + offset
        self.webhook_port = 8081 + offset
        self.scheduler_health = 8082 + offset
        self.dispatcher_health = 8083 + offset
        self.standin_port = 8090 + offset
        self.server_env = dict(os.environ, REELAY_PORT_OFFSET=str(offset), REELAY_DATA_DIR=str(data_dir))
        for name in ("REELAY_PG_PORT", "REELAY_AMQP_PORT"):
            self.server_env.pop(name, None)
        printed = subprocess.run(
            ["scripts/servers.sh", "env", "dev"], cwd=root, env=self.server_env, check=True, capture_output=True, text=True
        ).stdout
        values = {}
        for line in printed.splitlines():
            if line.startswith("export "):
                key, _, value = line[len("export "):].partition("=")
                values[key] = shlex.split(value)[0] if value else ""
        self.database_url = values["DATABASE_URL"]
        self.amqp_url = values["AMQP_URL"]
        self.rabbit_node = values["REELAY_RABBITMQ_NODE"]
        self.state = Path(values["REELAY_STATE_DIR"])
        self.pg_port = int(self.database_url.rsplit(":", 1)[1].split("/")[0])
        self.amqp_port = int(self.amqp_url.rsplit(":", 1)[1].split("/")[0])
        self.logs = self.state / "bench-logs"
        self.storage = self.state / "bench-storage"
        self.bin: Path | None = None
        self.started_servers = False
        self.processes: dict[str, Process] = {}
        self.webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        self.ops_token = secrets.token_hex(32)
        self.keys: list[str] = []
        self.user_ids: list[str] = []

    # ----- servers -----

    def servers_up(self) -> None:
        running = listening(self.pg_port) and listening(self.amqp_port)
        subprocess.run(["scripts/servers.sh", "up", "dev"], cwd=self.root, env=self.server_env, check=True)
        self.started_servers = not running
        self.logs.mkdir(parents=True, exist_ok=True)

    def servers_down(self) -> None:
        if self.started_servers:
            subprocess.run(["scripts/servers.sh", "down", "dev"], cwd=self.root, env=self.server_env, check=False)
            self.started_servers = False

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/{database}"

    def db(self) -> psycopg.Connection:
        return psycopg.connect(self.database_url, autocommit=True)

    def fresh_database(self) -> None:
        """Drops and recreates the instance's database, then migrates it with the release `reelay migrate`."""
        name = self.database_url.rsplit("/", 1)[1]
        with psycopg.connect(self.admin_url(), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {name} OWNER reelay")
        subprocess.run([str(self.bin / "reelay"), "migrate"], env=self.service_env({}), check=True,
                       stdout=subprocess.DEVNULL, stderr=open(self.logs / "migrate.log", "a"))

    def create_users(self, count: int) -> None:
        """`count` pro users, one API key each, through `reelay keys create` (the supported way; 8 at a time)."""
        ids = [str(uuid.UUID(int=(0xB0000000_0000_4000_8000_000000000000 + i))) for i in range(1, count + 1)]

        def create(user: str) -> str:
            out = subprocess.run(
                [str(self.bin / "reelay"), "keys", "create", "--user", user, "--tier", "pro"],
                env=self.service_env({}), check=True, capture_output=True, text=True).stdout
            return out.strip().splitlines()[-1]

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            self.keys = list(pool.map(create, ids))
        self.user_ids = ids

    def reset_state(self) -> None:
        """Empties the task tables and every queue: each phase starts from the same state (services stopped)."""
        with self.db() as conn:
            conn.execute(
                "TRUNCATE video_tasks, task_events, webhook_deliveries, rate_limits, idempotency_keys, admission_refusals")
            conn.execute("DELETE FROM users WHERE tier = 'free' AND id::text LIKE '00000000-0000-4000-9000-%'")
            conn.execute("VACUUM ANALYZE video_tasks")
            conn.execute("VACUUM ANALYZE task_events")
        self.purge_queues()
        subprocess.run(["rm", "-rf", str(self.storage)], check=False)
        self.storage.mkdir(parents=True, exist_ok=True)

    def queue_names(self) -> list[str]:
        out = subprocess.run(
            ["rabbitmqctl", "-q", "-n", self.rabbit_node, "list_queues", "name", "--no-table-headers"],
            capture_output=True, text=True, env=self.server_env)
        return [line.strip() for line in out.stdout.splitlines() if line.strip() and not line.startswith("Timeout")]

    def purge_queues(self, names: list[str] | None = None) -> None:
        import amqp  # py-amqp, installed with Celery

        names = self.queue_names() if names is None else names
        conn = amqp.Connection(f"127.0.0.1:{self.amqp_port}", userid="guest", password="guest", virtual_host="/")
        conn.connect()
        try:
            for name in names:
                channel = conn.channel()
                try:
                    channel.queue_purge(name)
                except Exception:
                    pass  # gone meanwhile (an exclusive reply queue); a new channel for the next
                finally:
                    try:
                        channel.close()
                    except Exception:
                        pass
        finally:
            conn.close()

    def rabbitmq_version(self) -> str:
        import amqp

        conn = amqp.Connection(f"127.0.0.1:{self.amqp_port}", userid="guest", password="guest")
        conn.connect()
        try:
            props = conn.server_properties
            version = props.get("version", "?")
            return version.decode() if isinstance(version, bytes) else str(version)
        finally:
            conn.close()

    # ----- services -----

    def service_env(self, settings: dict[str, str]) -> dict[str, str]:
        """A clean environment (no settings inherited from the caller's shell), as scripts/dev configures the services,
        plus the phase's settings."""
        env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "LC_ALL", "TZ") if key in os.environ}
        env.update(
            DATABASE_URL=self.database_url,
            AMQP_URL=self.amqp_url,
            GATEWAY_PORT=str(self.gateway_port),
            WEBHOOK_PORT=str(self.webhook_port),
            STORAGE_URL=f"file://{self.storage}",
            QUEUE_PROCESSOR_TOKEN=self.ops_token,
            REPLICATE_API_TOKEN=STANDIN_TOKEN,
            REPLICATE_WEBHOOK_SECRET=self.webhook_secret,
            REPLICATE_API_BASE_URL=f"http://127.0.0.1:{self.standin_port}/v1",
            WEBHOOK_PUBLIC_URL=f"http://127.0.0.1:{self.webhook_port}",
            OUTPUT_TRUSTED_ORIGINS=f"http://127.0.0.1:{self.standin_port}",
        )
        env.update(settings)
        return env

    def _start(self, name: str, argv: list[str], env: dict[str, str]) -> Process:
        out = open(self.logs / f"{name}.log", "ab")
        popen = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True)
        process = Process(name, popen)
        self.processes[name] = process
        return process

    def _wait_ready(self, url: str, name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = self.processes.get(name)
            if process and not process.alive():
                raise RuntimeError(f"{name} exited at start; see {self.logs / (name + '.log')}")
            if http_ok(url):
                return
            time.sleep(0.1)
        raise RuntimeError(f"{name} did not become ready at {url}; see {self.logs / (name + '.log')}")

    def start(self, settings: dict[str, str], standin: dict[str, str], without: tuple[str, ...] = ()) -> None:
        """The stand-in, then the services (all but `without`), each waited for until ready."""
        for port, what in ((self.gateway_port, "gateway"), (self.webhook_port, "webhook"), (self.standin_port, "stand-in"),
                           (self.scheduler_health, "scheduler health"), (self.dispatcher_health, "dispatcher health")):
            if listening(port):
                raise RuntimeError(f"port {port} ({what}) is taken by another process; choose another REELAY_PORT_OFFSET")
        env = self.service_env(settings)
        standin_env = dict(env, STANDIN_PORT=str(self.standin_port), STANDIN_PUBLIC_URL=f"http://127.0.0.1:{self.standin_port}")
        standin_env.update(standin)
        self._start("replicate-standin", [str(self.bin / "replicate-standin")], standin_env)
        self._wait_ready(f"http://127.0.0.1:{self.standin_port}/healthz", "replicate-standin")
        for name in SERVICES:
            if name not in without:
                self.start_service(name, settings)

    def start_service(self, name: str, settings: dict[str, str]) -> None:
        env = self.service_env(settings)
        if name == "scheduler":
            env["HEALTH_PORT"] = str(self.scheduler_health)
        if name == "dispatcher":
            env["HEALTH_PORT"] = str(self.dispatcher_health)
        self._start(name, [str(self.bin / name)], env)
        port = {"gateway": self.gateway_port, "webhook": self.webhook_port, "scheduler": self.scheduler_health,
                "dispatcher": self.dispatcher_health}[name]
        self._wait_ready(f"http://127.0.0.1:{port}/readyz", name)

    def sample(self) -> dict[str, dict[str, int]]:
        return {name: process.sample() for name, process in self.processes.items()}

    def stop_all(self) -> dict[str, dict[str, int]]:
        """Stops every process this instance started (services first, stand-in last); returns their last samples
        (VmHWM: the peak resident set of the process's life)."""
        samples = {}
        order = [n for n in ("gateway", "scheduler", "dispatcher", "webhook") if n in self.processes]
        order += [n for n in self.processes if n not in order]
        for name in order:
            process = self.processes[name]
            process.stop()
            samples[name] = dict(process.last_status)
        self.processes.clear()
        return samples

    # ----- the stand-in's own record -----

    def standin_get(self, path: str) -> dict | list:
        request = urllib.request.Request(f"http://127.0.0.1:{self.standin_port}{path}",
                                         headers={"Authorization": f"Bearer {STANDIN_TOKEN}"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())

    def standin_post(self, path: str) -> dict:
        request = urllib.request.Request(f"http://127.0.0.1:{self.standin_port}{path}", data=b"{}", method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())

    def predictions(self) -> list[dict]:
        """Every prediction the stand-in holds (its own timestamps), oldest first, with the task id from its webhook URL."""
        out: list[dict] = []
        cursor = 0
        while True:
            page = self.standin_get(f"/v1/predictions?cursor={cursor}")
            results = page.get("results", [])
            out.extend(results)
            if not page.get("next") or not results:
                break
            cursor += len(results)
        for prediction in out:
            prediction["_created"] = parse_time(prediction["created_at"])
            prediction["_completed"] = parse_time(prediction["completed_at"]) if prediction.get("completed_at") else None
            prediction["_task"] = task_from_webhook(prediction.get("webhook") or "")
        out.sort(key=lambda p: p["_created"])
        return out


def parse_time(text: str) -> float:
    """Replicate's ISO 8601 UTC time with up to 6 fractional digits, as seconds since the epoch."""
    import datetime

    text = text.rstrip("Z")
    whole, _, fraction = text.partition(".")
    moment = datetime.datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp() + (float("0." + fraction) if fraction else 0.0)


def task_from_webhook(url: str) -> str | None:
    from urllib.parse import parse_qs, urlparse

    values = parse_qs(urlparse(url).query).get("task")
    return values[0].lower() if values else None


def wait_until(check, timeout: float, every: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    return check()
