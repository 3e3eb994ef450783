"""scripts/bench: Reelay's figures of issue 9, side by side with pgbench and Celery on the same servers, in one run.

Builds the release binaries, starts PostgreSQL and RabbitMQ (scripts/servers.sh, its own instance), runs every phase,
prints a table, writes a JSON file and regenerates BENCHMARKS.md; stops everything it started. See BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import environment, report
from .celery_side import CeleryBench
from .progress import log
from .reelay_side import ReelayBench
from .stats import median
from .system import Instance

ROOT = Path(__file__).resolve().parents[2]

FULL = dict(reps=3, intake_warmup=3, intake_seconds=15, pgbench_seconds=10, celery_seconds=10, turnover_tasks=305,
            turnover_run_ms=250, paced_seconds=30, depths=[1_000, 100_000, 1_000_000], depth_seconds=20, pass_window=10,
            rate_observe=75, singles=10)
QUICK = dict(reps=1, intake_warmup=2, intake_seconds=8, pgbench_seconds=5, celery_seconds=5, turnover_tasks=105,
             turnover_run_ms=250, paced_seconds=15, depths=[1_000, 100_000], depth_seconds=10, pass_window=5,
             rate_observe=62, singles=5)
CLIENTS = 32
USERS = 200
RATE = 20.0
CREATE_LIMIT = 120


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="one repetition, shorter phases, depths 1,000 and 100,000 (a few minutes); writes to "
                             ".reelay/bench/ unless --markdown/--json say otherwise")
    parser.add_argument("--depths", help="comma-separated queue depths to seed (default 1000,100000,1000000)")
    parser.add_argument("--reps", type=int, help="repetitions of the throughput figures (default 3; medians reported)")
    parser.add_argument("--offset", type=int, default=int(os.environ.get("REELAY_PORT_OFFSET", "500")),
                        help="REELAY_PORT_OFFSET of the benchmark's own instance (default 500: gateway 8580, "
                             "PostgreSQL 55932, RabbitMQ 6172)")
    parser.add_argument("--no-build", action="store_true", help="use the release binaries as they are")
    parser.add_argument("--keep-servers", action="store_true", help="leave PostgreSQL and RabbitMQ running at the end")
    parser.add_argument("--markdown", help="where to write the report (default BENCHMARKS.md; --quick: .reelay/bench/)")
    parser.add_argument("--json", help="where to write the figures (default Benchmarks/results.json)")
    parser.add_argument("--note", action="append", default=[],
                        help="a line for the report (e.g. what else ran); with --from-json, replaces the run's notes")
    parser.add_argument("--only", help="comma-separated phases: pgbench,celery,intake,turnover,free-slot,depth,rate")
    parser.add_argument("--from-json", metavar="PATH",
                        help="measure nothing: print the table and rewrite the report from a results file of a run")
    return parser.parse_args()


def build() -> Path:
    log("building the release binaries (swift build -c release; several minutes the first time)")
    began = time.monotonic()
    subprocess.run(["swift", "build", "-c", "release"], cwd=ROOT, check=True)
    log(f"built in {time.monotonic() - began:.0f} s")
    return bin_path()


def bin_path() -> Path:
    out = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.strip()
    return Path(out)


def main() -> int:
    args = parse_args()
    if args.offset < 300:
        print("bench: use REELAY_PORT_OFFSET (or --offset) 300 or above, so the benchmark never meets a dev instance",
              file=sys.stderr)
        return 2
    plan = dict(QUICK if args.quick else FULL)
    if args.depths:
        plan["depths"] = [int(d.replace("_", "")) for d in args.depths.split(",") if d.strip()]
    if args.reps:
        plan["reps"] = args.reps
    phases = set((args.only or "pgbench,celery,intake,turnover,free-slot,depth,rate").split(","))
    bench_dir = ROOT / ".reelay" / "bench"
    markdown = Path(args.markdown) if args.markdown else (bench_dir / "BENCHMARKS-quick.md" if args.quick
                                                          else ROOT / "BENCHMARKS.md")
    json_path = Path(args.json) if args.json else (bench_dir / "results-quick.json" if args.quick
                                                   else ROOT / "Benchmarks" / "results.json")
    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())
        if args.note:
            results["meta"]["notes"] = args.note
        rows = report.figures(results)
        print(report.table(rows))
        results["figures"] = rows
        Path(args.from_json).write_text(json.dumps(results, indent=2, default=str) + "\n")
        markdown.write_text(report.markdown(results, rows, Path(args.from_json), ROOT))
        log(f"report rewritten in {markdown} from {args.from_json}")
        return 0

    def terminate(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)

    started_at = datetime.datetime.now(datetime.timezone.utc)
    wall = time.monotonic()
    log(f"{'quick' if args.quick else 'full'} run; measuring how busy the machine is before anything starts")
    busy_before = environment.cpu_busy(3.0)
    load_before = os.getloadavg()
    others = environment.busy_processes()
    log(f"machine {busy_before}% busy (load {load_before[0]:.2f}) before the run"
        + (f"; busiest: {', '.join(others)}" if others else ""))

    results: dict = {
        "meta": {
            "mode": "quick" if args.quick else "full", "started_at": started_at.isoformat(timespec="seconds"),
            "command": "scripts/bench" + (" --quick" if args.quick else "") + (f" --depths {args.depths}" if args.depths else ""),
            "machine": environment.machine(), "cpu_busy_before_percent": busy_before,
            "loadavg_before": [round(x, 2) for x in load_before], "busiest_before": others, "notes": args.note,
            "plan": plan, "clients": CLIENTS, "users": USERS, "rate_per_s": RATE,
        },
        "pgbench": {"reps": []}, "celery": {"enqueue": {"reps": []}, "enqueue_unconfirmed": {"reps": []}},
        "reelay": {"intake": {"reps": []}, "depth": {}}, "rss": {},
    }
    instance = Instance(ROOT, args.offset, bench_dir)
    celery: CeleryBench | None = None
    load_samples: list[float] = []
    try:
        instance.bin = bin_path() if args.no_build else build()
        for name in ("gateway", "scheduler", "dispatcher", "webhook", "reelay", "replicate-standin"):
            if not (instance.bin / name).exists():
                raise RuntimeError(f"{instance.bin / name} is missing; run without --no-build")
        log(f"starting PostgreSQL and RabbitMQ (scripts/servers.sh, state in {instance.state})")
        instance.servers_up()
        log("fresh database, migrated; creating 200 users with an API key each (reelay keys create)")
        instance.fresh_database()
        instance.create_users(USERS)
        results["meta"]["versions"] = environment.versions(ROOT, instance)
        reelay = ReelayBench(instance, results["rss"])
        celery = CeleryBench(instance.amqp_port, instance.logs, concurrency=5)

        def sample_load() -> None:
            load_samples.append(os.getloadavg()[0])

        # Throughput figures, repeated and interleaved so that each system sees the same moments of a noisy machine.
        for rep in range(1, plan["reps"] + 1):
            sample_load()
            if "pgbench" in phases:
                log(f"pgbench rep {rep}/{plan['reps']}: single-row INSERT, prepared, {CLIENTS} clients, "
                    f"{plan['pgbench_seconds']} s")
                result = environment.pgbench(instance, CLIENTS, plan["pgbench_seconds"])
                results["pgbench"]["reps"].append(result)
                log(f"  pgbench: {result['per_second']:,.0f} inserts/s")
            if "celery" in phases:
                log(f"Celery rep {rep}/{plan['reps']}: enqueue, {CLIENTS} clients, {plan['celery_seconds']} s, "
                    "publisher confirms")
                result = celery.enqueue_throughput(CLIENTS, plan["celery_seconds"], confirm=True)
                results["celery"]["enqueue"]["reps"].append(result)
                log(f"  Celery: {result['per_second']:,.0f} enqueues/s")
                if rep == 1:
                    result = celery.enqueue_throughput(CLIENTS, plan["celery_seconds"], confirm=False)
                    results["celery"]["enqueue_unconfirmed"]["reps"].append(result)
                    log(f"  Celery without publisher confirms (reference): {result['per_second']:,.0f} enqueues/s")
            if "intake" in phases:
                log(f"Reelay intake rep {rep}/{plan['reps']}: {CLIENTS} clients, {USERS} users, "
                    f"{plan['intake_warmup']} s warm-up + {plan['intake_seconds']} s")
                result = reelay.intake(rep, CLIENTS, plan["intake_warmup"], plan["intake_seconds"])
                results["reelay"]["intake"]["reps"].append(result)
                log(f"  Reelay: {result['per_second']:,.0f} admitted/s; HTTP p50 {result['http_ms'].get('p50')} ms, "
                    f"p99 {result['http_ms'].get('p99')} ms; answers {result['statuses']}")

        if "celery" in phases:
            sample_load()
            log(f"Celery: enqueue -> start at {RATE:.0f}/s for {plan['paced_seconds']} s (worker: prefork, 5 processes)")
            celery.start_worker()
            celery.warm()
            results["celery"]["latency"] = celery.latency(RATE, plan["paced_seconds"])
            log(f"  Celery enqueue->start: {results['celery']['latency']['enqueue_to_start_ms']}")
            log(f"Celery: finish -> next start, backlog of {plan['turnover_tasks']} tasks of "
                f"{plan['turnover_run_ms']} ms, 5 processes")
            results["celery"]["turnover"] = celery.turnover(plan["turnover_tasks"], plan["turnover_run_ms"] / 1000)
            log(f"  Celery finish->next start: {results['celery']['turnover']['finish_to_next_start_ms']}")
            celery.stop_worker()

        if "turnover" in phases:
            sample_load()
            log(f"Reelay: slot turnover, backlog of {plan['turnover_tasks']} tasks, predictions of "
                f"{plan['turnover_run_ms']} ms, MAX_CONCURRENT_TASKS=5")
            results["reelay"]["turnover"] = reelay.turnover(plan["turnover_tasks"], plan["turnover_run_ms"])
            log(f"  Reelay webhook sent->next create: {results['reelay']['turnover']['webhook_sent_to_next_create_ms']}")

        if "free-slot" in phases:
            sample_load()
            log(f"Reelay: submit -> create with a free slot, {RATE:.0f}/s for {plan['paced_seconds']} s, "
                "instant predictions")
            results["reelay"]["free_slot"] = reelay.free_slot(RATE, plan["paced_seconds"])
            log(f"  Reelay submit->create: {results['reelay']['free_slot']['submit_to_create_ms']}")

        if "depth" in phases:
            for depth in plan["depths"]:
                sample_load()
                log(f"Reelay: submit -> create and scheduling passes at {depth:,} pending")
                result = reelay.depth(depth, RATE, plan["depth_seconds"], plan["pass_window"],
                                      drain=max(120.0, 300.0 * depth / 1_000_000), singles=plan["singles"])
                results["reelay"]["depth"][str(depth)] = result
                log(f"  at {depth:,}: submit->create {result['submit_to_create_ms']}; "
                    f"pass with the backlog due {result['due_backlog']['scheduling_pass_ms']}")

        if "rate" in phases:
            sample_load()
            log(f"Reelay: creates per rolling minute at REPLICATE_CREATE_RATE_PER_MIN={CREATE_LIMIT}, "
                f"observed {plan['rate_observe']} s")
            results["reelay"]["rate"] = reelay.create_rate(CREATE_LIMIT, plan["rate_observe"])
            log(f"  most creates in any 60 s: {results['reelay']['rate']['max_in_any_60s']}")
    except KeyboardInterrupt as interrupt:
        log(f"interrupted ({interrupt}); cleaning up")
        cleanup(instance, celery, args.keep_servers)
        return 130
    except Exception:
        cleanup(instance, celery, args.keep_servers)
        raise
    cleanup(instance, celery, args.keep_servers)

    results["meta"]["seconds"] = round(time.monotonic() - wall)
    results["meta"]["loadavg_during"] = [round(x, 2) for x in load_samples]
    summarize(results)
    rows = report.figures(results)
    print(report.table(rows))
    json_path.parent.mkdir(parents=True, exist_ok=True)
    results["figures"] = rows
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    markdown.parent.mkdir(parents=True, exist_ok=True)
    markdown.write_text(report.markdown(results, rows, json_path, ROOT))
    log(f"figures in {json_path}; report in {markdown}; {results['meta']['seconds']} s in all")
    return 0


def summarize(results: dict) -> None:
    def med(reps: list[dict], key: str):
        return median([r[key] for r in reps if r.get(key) is not None])

    results["pgbench"]["median_per_second"] = med(results["pgbench"]["reps"], "per_second")
    for name in ("enqueue", "enqueue_unconfirmed"):
        results["celery"][name]["median_per_second"] = med(results["celery"][name]["reps"], "per_second")
    intake = results["reelay"]["intake"]
    intake["median_per_second"] = med(intake["reps"], "per_second")
    intake["http_ms"] = {p: median([r["http_ms"][p] for r in intake["reps"] if p in r["http_ms"]])
                         for p in ("p50", "p90", "p99", "max")}
    peaks: dict[str, int] = {}
    for processes in results["rss"].values():
        for name, status in processes.items():
            peaks[name] = max(peaks.get(name, 0), status.get("VmHWM", 0))
    results["reelay"]["peak_rss_mib"] = {name: round(kib / 1024, 1) for name, kib in sorted(peaks.items())}


def cleanup(instance: Instance, celery: CeleryBench | None, keep_servers: bool) -> None:
    log("stopping what the benchmark started")
    try:
        if celery:
            celery.cleanup()
    finally:
        try:
            instance.stop_all()
        finally:
            if not keep_servers:
                instance.servers_down()


if __name__ == "__main__":
    sys.exit(main())
