"""Celery 5.x on the same RabbitMQ: enqueue throughput (32 clients), enqueue -> start latency at a steady rate, and
finish -> next start in a worker process with a backlog (the worker's concurrency is Reelay's slot count)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .progress import log
from .stats import summary_ms
from .system import Process

HERE = Path(__file__).resolve().parent


class CeleryBench:
    def __init__(self, amqp_port: int, logs: Path, concurrency: int):
        self.url = f"amqp://guest:guest@127.0.0.1:{amqp_port}//"
        self.logs = logs
        self.concurrency = concurrency
        self.out = Path(tempfile.mkdtemp(prefix="reelay-bench-celery-"))
        self.worker: Process | None = None
        os.environ["BENCH_AMQP_URL"] = self.url
        os.environ["BENCH_CELERY_OUT"] = str(self.out)
        from . import celery_app  # after the environment is set

        self.app = celery_app.app
        self.queue = celery_app.QUEUE

    def env(self, confirm: bool = True) -> dict[str, str]:
        return dict(os.environ, BENCH_AMQP_URL=self.url, BENCH_CELERY_OUT=str(self.out),
                    BENCH_CELERY_CONFIRM="1" if confirm else "0", PYTHONPATH=str(HERE.parent))

    # ----- the worker -----

    def start_worker(self) -> None:
        argv = [sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker", "--pool=prefork",
                f"--concurrency={self.concurrency}", "-Q", self.queue, "--without-heartbeat", "--without-gossip",
                "--without-mingle", "-l", "WARNING", "-n", f"reelay-bench-{os.getpid()}@%h"]
        out = open(self.logs / "celery-worker.log", "ab")
        popen = subprocess.Popen(argv, cwd=HERE.parent, env=self.env(), stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        self.worker = Process("celery-worker", popen, group=True)

    def stop_worker(self) -> None:
        if self.worker:
            self.worker.stop(grace=15)
            self.worker = None

    def purge(self) -> None:
        with self.app.connection_for_write() as conn:
            channel = conn.default_channel
            try:
                channel.queue_purge(self.queue)
            except Exception:
                pass

    def queued(self) -> int:
        with self.app.connection_for_write() as conn:
            try:
                return conn.default_channel.queue_declare(self.queue, passive=True).message_count
            except Exception:
                return 0

    def records(self) -> list[tuple[int, float, float, float]]:
        """(pid, enqueued, started, finished) of every task run so far."""
        rows = []
        for path in self.out.glob("*.log"):
            pid = int(path.stem)
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) == 3:
                    rows.append((pid, float(parts[0]), float(parts[1]), float(parts[2])))
        return rows

    def clear_records(self) -> None:
        # Emptied, not removed: a worker process keeps its file open (in append mode) for its whole life.
        for path in self.out.glob("*.log"):
            path.write_text("")

    def wait_records(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.records()) >= count:
                return True
            if self.worker and not self.worker.alive():
                raise RuntimeError(f"the Celery worker exited; see {self.logs / 'celery-worker.log'}")
            time.sleep(0.2)
        return False

    def warm(self) -> None:
        """The worker answers: a few no-op tasks are run (and forgotten)."""
        for _ in range(self.concurrency * 2):
            self.app.send_task("bench.run", args=[time.time(), 0.0])
        if not self.wait_records(self.concurrency * 2, 60):
            raise RuntimeError("the Celery worker ran no task within 60 s")
        self.clear_records()

    # ----- the measurements -----

    def enqueue_throughput(self, clients: int, duration: float, confirm: bool = True) -> dict:
        """`clients` threads (split over as many processes as there are cores) enqueueing as fast as they can."""
        self.purge()
        processes = max(1, min(os.cpu_count() or 1, clients))
        per = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
        start = time.time() + 2.5
        children = [
            subprocess.Popen([sys.executable, "-m", "bench.celery_producer", "--threads", str(n), "--start", str(start),
                              "--duration", str(duration)], cwd=HERE.parent, env=self.env(confirm),
                             stdout=subprocess.PIPE, stderr=open(self.logs / "celery-producer.log", "ab"), text=True,
                             start_new_session=True)
            for n in per
        ]
        total = after = 0
        try:
            for child in children:
                out, _ = child.communicate(timeout=duration + 120)
                if child.returncode != 0:
                    raise RuntimeError(f"a Celery producer failed; see {self.logs / 'celery-producer.log'}")
                result = json.loads(out.strip().splitlines()[-1])
                total += result["count"]
                after += result["after_window"]
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait()
        time.sleep(0.5)
        queued = self.queued()
        self.purge()
        return {"per_second": round(total / duration, 1), "enqueued": total, "in_queue_after": queued,
                "sent_after_window": after, "clients": clients, "processes": processes, "confirm_publish": confirm,
                "duration_s": duration}

    def latency(self, rate: float, duration: float) -> dict:
        """Enqueue -> start at a steady `rate`, one producer, the worker idle otherwise."""
        self.purge()
        self.clear_records()
        count = int(rate * duration)
        begin = time.monotonic() + 0.2
        for i in range(count):
            delay = begin + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.app.send_task("bench.run", args=[time.time(), 0.0])
            if i and i % int(rate * 5) == 0:
                log(f"  celery enqueue->start: {i}/{count} enqueued")
        self.wait_records(count, 60)
        rows = self.records()
        return {"enqueue_to_start_ms": summary_ms([started - enqueued for _, enqueued, started, _ in rows]),
                "rate_per_s": rate, "sent": count, "ran": len(rows)}

    def turnover(self, count: int, sleep_s: float) -> dict:
        """A backlog of `count` tasks of `sleep_s` each, enqueued before the worker starts; per worker process, the time
        from one task's end to the start of the next."""
        self.stop_worker()
        self.purge()
        self.clear_records()
        for _ in range(count):
            self.app.send_task("bench.run", args=[time.time(), sleep_s])
        self.start_worker()
        expected = count * sleep_s / self.concurrency
        ok = self.wait_records(count, expected * 3 + 60)
        rows = self.records()
        gaps = []
        by_pid: dict[int, list[tuple[float, float]]] = {}
        for pid, _, started, finished in rows:
            by_pid.setdefault(pid, []).append((started, finished))
        # Every task was queued before the worker started, so each process's next task was always waiting.
        for runs in by_pid.values():
            runs.sort()
            for (_, finished), (started, _) in zip(runs, runs[1:]):
                gaps.append(started - finished)
        return {"finish_to_next_start_ms": summary_ms(gaps), "tasks": count, "ran": len(rows), "task_seconds": sleep_s,
                "worker_processes": len(by_pid), "complete": ok}

    def cleanup(self) -> None:
        self.stop_worker()
        try:
            self.purge()
        except Exception:
            pass
        shutil.rmtree(self.out, ignore_errors=True)
