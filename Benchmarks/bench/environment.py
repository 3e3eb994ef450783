"""The machine, the versions, how busy the machine was, and pgbench against the instance's PostgreSQL."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from .system import Instance


def _run(argv: list[str], cwd: Path | None = None) -> str:
    try:
        return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    mhz = re.search(r"^cpu MHz\s*:\s*(.+)$", cpuinfo, re.M)
    meminfo = Path("/proc/meminfo").read_text()
    mem = re.search(r"^MemTotal:\s*(\d+)", meminfo, re.M)
    os_name = ""
    if Path("/etc/os-release").exists():
        found = re.search(r'^PRETTY_NAME="?([^"\n]+)', Path("/etc/os-release").read_text(), re.M)
        os_name = found.group(1) if found else ""
    return {
        "cpu_model": model.group(1).strip() if model else platform.processor(),
        "cpu_mhz": mhz.group(1).strip() if mhz else None,
        "nproc": int(_run(["nproc"]) or os.cpu_count() or 0),
        "memory_gib": round(int(mem.group(1)) / 1024 / 1024, 1) if mem else None,
        "kernel": platform.release(),
        "os": os_name,
    }


def cpu_busy(seconds: float = 3.0) -> float:
    """Share of all cores busy over `seconds` (from /proc/stat), in percent."""
    def snapshot() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields), idle

    total0, idle0 = snapshot()
    time.sleep(seconds)
    total1, idle1 = snapshot()
    total = total1 - total0
    return round(100 * (total - (idle1 - idle0)) / total, 1) if total else 0.0


def busy_processes(limit: int = 6) -> list[str]:
    """The busiest processes right now (ps), to say what else was running."""
    out = _run(["ps", "-eo", "pcpu,comm", "--sort=-pcpu", "--no-headers"])
    rows = []
    for line in out.splitlines()[:limit]:
        parts = line.split(None, 1)
        if len(parts) == 2 and float(parts[0]) >= 5:
            rows.append(f"{parts[1]} {parts[0]}%")
    return rows


def versions(root: Path, instance: Instance) -> dict:
    import aiohttp
    import amqp
    import celery
    import kombu

    swift = _run(["swift", "--version"]).splitlines()
    with psycopg.connect(instance.database_url) as conn:
        postgres = conn.execute("SHOW server_version").fetchone()[0]
        fsync = conn.execute("SHOW fsync").fetchone()[0]
        sync_commit = conn.execute("SHOW synchronous_commit").fetchone()[0]
    commit = _run(["git", "rev-parse", "--short=12", "HEAD"], root)
    # Changes to what is measured (not to the benchmark itself).
    dirty = bool(_run(["git", "status", "--porcelain", "--", "Package.swift", "Shared", "Services", "Tools"], root))
    return {
        "reelay_commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "swift": next((line for line in swift if "Swift version" in line), swift[0] if swift else "?"),
        "postgresql": postgres,
        "postgresql_settings": {"fsync": fsync, "synchronous_commit": sync_commit},
        "rabbitmq": instance.rabbitmq_version(),
        "pgbench": _run(["pgbench", "--version"]),
        "python": sys.version.split()[0],
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "py-amqp": amqp.__version__,
        "aiohttp": aiohttp.__version__,
        "psycopg": psycopg.__version__,
    }


PGBENCH_DB = "reelay_pgbench"
PGBENCH_SCRIPT = "INSERT INTO bench_insert (user_uuid, prompt) VALUES (gen_random_uuid(), 'a red fox running through snow');\n"


def pgbench(instance: Instance, clients: int, seconds: float) -> dict:
    """Single-row INSERTs, one per transaction, prepared statements (-M prepared), `clients` connections."""
    with psycopg.connect(instance.admin_url(), autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [PGBENCH_DB]).fetchone():
            admin.execute(f"CREATE DATABASE {PGBENCH_DB} OWNER reelay")
    url = instance.admin_url(PGBENCH_DB).replace("postgres@", "reelay@")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("""CREATE TABLE IF NOT EXISTS bench_insert (
                            id bigserial PRIMARY KEY, user_uuid uuid NOT NULL, prompt text NOT NULL,
                            created_at timestamptz NOT NULL DEFAULT now())""")
        conn.execute("TRUNCATE bench_insert")
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write(PGBENCH_SCRIPT)
    try:
        jobs = min(clients, os.cpu_count() or 1)
        argv = ["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", str(jobs), "-T", str(int(seconds)),
                "-f", script.name, "-h", "127.0.0.1", "-p", str(instance.pg_port), "-U", "reelay", PGBENCH_DB]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120)
    finally:
        os.unlink(script.name)
    if out.returncode != 0:
        raise RuntimeError(f"pgbench failed: {out.stderr.strip()[-300:]}")
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out.stdout)
    latency = re.search(r"latency average = ([\d.]+) ms", out.stdout)
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT count(*) FROM bench_insert").fetchone()[0]
        conn.execute("TRUNCATE bench_insert")
    return {"per_second": round(float(tps.group(1)), 1) if tps else None,
            "latency_avg_ms": float(latency.group(1)) if latency else None, "rows": rows, "clients": clients,
            "jobs": jobs, "seconds": seconds, "command": " ".join(argv).replace(script.name, "insert.sql")}
