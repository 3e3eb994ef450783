"""The table (terminal), and BENCHMARKS.md (method, machine, figures, ratios), from one run's results."""

from __future__ import annotations

from pathlib import Path


def _n(value, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def _ms(summary: dict | None, *keys: str) -> str:
    if not summary or not summary.get("n"):
        return "—"
    return " / ".join(_n(summary.get(k), 1) for k in keys) + " ms"


def _ratio(a, b, digits: int = 2) -> float | None:
    if a is None or b in (None, 0):
        return None
    return round(a / b, digits)


def _verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("met" if ok else "missed")


def figures(results: dict) -> list[dict]:
    """One row per figure of issue 9: what Reelay did, what it is compared with, the ratio, the issue's target."""
    rows = []
    reelay, celery, pgbench = results["reelay"], results["celery"], results["pgbench"]

    intake = reelay["intake"].get("median_per_second")
    enqueue = celery["enqueue"].get("median_per_second")
    inserts = pgbench.get("median_per_second")
    vs_celery, vs_pg = _ratio(intake, enqueue), _ratio(intake, inserts, 3)
    rows.append({
        "metric": "intake: submissions admitted and persisted per second, 32 clients, 200 users",
        "reelay": f"{_n(intake)}/s", "comparison": f"Celery {_n(enqueue)}/s; pgbench {_n(inserts)}/s",
        "ratio": f"{_n(vs_celery, 2)}× Celery, {_n(vs_pg, 3)}× pgbench",
        "target": "≥ 5× Celery, ≥ 0.6× pgbench",
        "verdict": _verdict(None if vs_celery is None or vs_pg is None else vs_celery >= 5 and vs_pg >= 0.6),
        "values": {"reelay": intake, "celery": enqueue, "pgbench": inserts, "x_celery": vs_celery, "x_pgbench": vs_pg},
    })
    http = reelay["intake"].get("http_ms") or {}
    rows.append({
        "metric": "HTTP answer under that load, p50 / p99",
        "reelay": _ms(dict(http, n=1) if http.get("p50") is not None else None, "p50", "p99"),
        "comparison": "—", "ratio": "—", "target": "p99 ≤ 50 ms",
        "verdict": _verdict(None if http.get("p99") is None else http["p99"] <= 50), "values": http,
    })

    turnover = (reelay.get("turnover") or {}).get("webhook_sent_to_next_create_ms")
    celery_turn = (celery.get("turnover") or {}).get("finish_to_next_start_ms")
    r = _ratio((turnover or {}).get("p99"), (celery_turn or {}).get("p99"), 1)
    rows.append({
        "metric": "slot turnover: completion webhook sent → next create received, cap 5, p50 / p99",
        "reelay": _ms(turnover, "p50", "p99"), "comparison": f"Celery finish → next start {_ms(celery_turn, 'p50', 'p99')}",
        "ratio": f"p99 {_n(r, 1)}×", "target": "p99 ≤ Celery's p99",
        "verdict": _verdict(None if r is None else r <= 1.0), "values": {"reelay": turnover, "celery": celery_turn},
    })

    free = (reelay.get("free_slot") or {}).get("submit_to_create_ms")
    celery_lat = (celery.get("latency") or {}).get("enqueue_to_start_ms")
    r = _ratio((free or {}).get("p99"), (celery_lat or {}).get("p99"), 1)
    rows.append({
        "metric": "submit → create received with a free slot, 20/s, p50 / p99",
        "reelay": _ms(free, "p50", "p99"), "comparison": f"Celery enqueue → start {_ms(celery_lat, 'p50', 'p99')}",
        "ratio": f"p99 {_n(r, 1)}×", "target": "p99 ≤ 1.5× Celery's p99",
        "verdict": _verdict(None if r is None else r <= 1.5), "values": {"reelay": free, "celery": celery_lat},
    })

    depths = reelay.get("depth") or {}
    base = depths.get("1000")
    # The target is at 1,000,000 pending; shallower depths are shown against 1,000 without a verdict.
    judged = {k for k in depths if int(k) >= 1_000_000}
    for key in sorted(depths, key=int):
        d = depths[key]
        lat = d.get("submit_to_create_ms")
        r50 = _ratio((lat or {}).get("p50"), ((base or {}).get("submit_to_create_ms") or {}).get("p50"), 1)
        r99 = _ratio((lat or {}).get("p99"), ((base or {}).get("submit_to_create_ms") or {}).get("p99"), 1)
        unfinished = d.get("accepted", 0) - d.get("created", 0)
        notes = []
        if d.get("answered_submitted"):
            notes.append(f"{d['answered_submitted']} of {d.get('sent')} answered 'submitted'")
        if unfinished:
            notes.append(f"{unfinished} never created")
        rows.append({
            "metric": f"submit → create at {int(key):,} pending (20/s), p50 / p99",
            "reelay": _ms(lat, "p50", "p99") + (f" ({'; '.join(notes)})" if notes else ""),
            "comparison": "1,000 pending" if key != "1000" else "—",
            "ratio": f"p50 {_n(r50, 1)}×, p99 {_n(r99, 1)}×" if key != "1000" else "—",
            "target": "≤ 1.5× of 1,000 pending" if key in judged else "—",
            "verdict": _verdict(None if key not in judged or r99 is None else (r99 <= 1.5 and r50 <= 1.5)),
            "values": {"submit_to_create_ms": lat, "x_1000_p50": r50, "x_1000_p99": r99},
        })
    for key in sorted(depths, key=int):
        alone = depths[key].get("one_at_a_time_ms")
        if not alone:
            continue
        base_alone = (base or {}).get("one_at_a_time_ms") or {}
        r50 = _ratio(alone.get("p50"), base_alone.get("p50"), 1)
        rows.append({
            "metric": f"submit → create one at a time (nothing else in flight) at {int(key):,} pending, p50 / max",
            "reelay": _ms(alone, "p50", "max"), "comparison": "1,000 pending" if key != "1000" else "—",
            "ratio": f"p50 {_n(r50, 1)}×" if key != "1000" else "—",
            "target": "≤ 1.5× of 1,000 pending" if key in judged else "—",
            "verdict": _verdict(None if key not in judged or r50 is None else r50 <= 1.5),
            "values": {"one_at_a_time_ms": alone, "x_1000_p50": r50},
        })
    for key in sorted(depths, key=int):
        d = depths[key]
        passes = (d.get("due_backlog") or {}).get("scheduling_pass_ms")
        base_pass = ((base or {}).get("due_backlog") or {}).get("scheduling_pass_ms") or {}
        r50 = _ratio((passes or {}).get("p50"), base_pass.get("p50"), 1)
        rows.append({
            "metric": f"one scheduling pass (claim transaction, BEGIN → COMMIT) at {int(key):,} pending, all due, p50 / p99",
            "reelay": _ms(passes, "p50", "p99"), "comparison": "1,000 pending" if key != "1000" else "—",
            "ratio": f"p50 {_n(r50, 1)}×" if key != "1000" else "—",
            "target": "≤ 1.5× of 1,000 pending" if key in judged else "—",
            "verdict": _verdict(None if key not in judged or r50 is None else r50 <= 1.5),
            "values": {"scheduling_pass_ms": passes, "x_1000_p50": r50},
        })

    rate = reelay.get("rate") or {}
    most = rate.get("max_in_any_60s")
    rows.append({
        "metric": f"creates in any rolling minute at REPLICATE_CREATE_RATE_PER_MIN={rate.get('limit_per_min', 120)}",
        "reelay": f"{_n(most)} (first minute {_n(rate.get('first_minute'))}, first 10 s {_n(rate.get('first_10s'))})",
        "comparison": f"limit {rate.get('limit_per_min', 120)}", "ratio": "—", "target": "never above the limit",
        "verdict": _verdict(None if most is None else most <= rate.get("limit_per_min", 120)), "values": rate,
    })

    peaks = reelay.get("peak_rss_mib") or {}
    services = {k: v for k, v in peaks.items() if k in ("gateway", "scheduler", "dispatcher", "webhook")}
    rows.append({
        "metric": "peak RSS per service over the whole run (VmHWM)",
        "reelay": ", ".join(f"{k} {v:.1f}" for k, v in services.items()) + " MiB" if services else "—",
        "comparison": "—", "ratio": "—", "target": "≤ 64 MiB",
        "verdict": _verdict(None if not services else max(services.values()) <= 64), "values": peaks,
    })
    return rows


def table(rows: list[dict]) -> str:
    headers = ("metric", "Reelay", "same run", "ratio", "target", "")
    cells = [(r["metric"], r["reelay"], r["comparison"], r["ratio"], r["target"], r["verdict"]) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    widths[0] = min(widths[0], 60)

    def line(values) -> str:
        parts = []
        for i, value in enumerate(values):
            text = value if len(value) <= widths[i] else value[: widths[i] - 1] + "…"
            parts.append(text.ljust(widths[i]))
        return "  ".join(parts).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(c) for c in cells]
    return "\n".join(out)


def _md_table(rows: list[dict]) -> str:
    out = ["| metric | Reelay now | same run | ratio | issue 9 target | |", "|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['metric']} | {r['reelay']} | {r['comparison']} | {r['ratio']} | {r['target']} | {r['verdict']} |")
    return "\n".join(out)


def _summary_line(summary: dict | None) -> str:
    if not summary or not summary.get("n"):
        return "no samples"
    return (f"n {summary['n']}, p50 {summary['p50']:,.1f}, p90 {summary['p90']:,.1f}, p99 {summary['p99']:,.1f}, "
            f"max {summary['max']:,.1f} ms")


def markdown(results: dict, rows: list[dict], json_path: Path, root: Path) -> str:
    meta, reelay, celery, pgbench = results["meta"], results["reelay"], results["celery"], results["pgbench"]
    machine, versions, plan = meta["machine"], meta.get("versions", {}), meta["plan"]
    try:
        shown_json = json_path.resolve().relative_to(root)
    except ValueError:
        shown_json = json_path
    busy = meta.get("cpu_busy_before_percent")
    loads = meta.get("loadavg_during") or []
    noisy = busy is not None and busy >= 10
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{meta['command']}` on {meta['started_at']} ({meta['seconds']} s); do not edit by hand, run it again.",
        f"The figures of issue 9 for Reelay as it is at commit `{versions.get('reelay_commit', '?')}`,",
        "side by side, in the same run and on the same servers, with `pgbench` and Celery. Every figure is in",
        f"`{shown_json}` too.",
        "",
    ]
    if noisy or meta.get("notes"):
        lines.append("> **Noisy figures.** "
                     + (f"The machine was already {busy:.0f} % busy (load average {meta['loadavg_before'][0]:.2f} on "
                        f"{machine['nproc']} cores) before the run started"
                        + (f" ({', '.join(meta['busiest_before'])})" if meta.get("busiest_before") else "")
                        + (f", and the load average stayed at {min(loads):.1f}–{max(loads):.1f} during it" if loads else "")
                        + ". " if noisy else "")
                     + " ".join(meta.get("notes", []))
                     + " Absolute figures are lower and tails longer than on a quiet machine; the ratios, taken in the same"
                       " minutes, are the more telling. Run `scripts/bench` again on a quiet machine for reference figures.")
        lines.append("")
    lines += ["## Figures", "", _md_table(rows), ""]
    if meta["mode"] == "quick":
        lines += ["This was a `--quick` run: one repetition, shorter phases, fewer depths.", ""]
    lines += [
        "Throughput figures are medians of "
        f"{plan['reps']} repetition{'s' if plan['reps'] != 1 else ''}, interleaved (pgbench, Celery, Reelay, then again);",
        "latency figures are percentiles over every sample of one phase (linear interpolation between closest ranks).",
        "",
        "Per repetition:",
        "",
        "| rep | pgbench inserts/s | Celery enqueues/s | Reelay admitted/s | Reelay HTTP p50 / p99 | Reelay answers | their rows found |",
        "|---|---|---|---|---|---|---|",
    ]
    for i in range(max(len(pgbench["reps"]), len(celery["enqueue"]["reps"]), len(reelay["intake"]["reps"]))):
        pg = pgbench["reps"][i] if i < len(pgbench["reps"]) else {}
        ce = celery["enqueue"]["reps"][i] if i < len(celery["enqueue"]["reps"]) else {}
        re_ = reelay["intake"]["reps"][i] if i < len(reelay["intake"]["reps"]) else {}
        answers = ", ".join(f"{k}: {v}" for k, v in (re_.get("statuses") or {}).items())
        lines.append(f"| {i + 1} | {_n(pg.get('per_second'))} | {_n(ce.get('per_second'))} | {_n(re_.get('per_second'))} "
                     f"| {_ms(re_.get('http_ms'), 'p50', 'p99')} | {answers or '—'} | {_n(re_.get('persisted_checked'))} |")
    unconfirmed = celery.get("enqueue_unconfirmed", {}).get("median_per_second")
    if unconfirmed:
        lines += ["", f"For reference, Celery without publisher confirms (a publish the broker may still lose): "
                      f"{_n(unconfirmed)} enqueues/s."]

    turnover = reelay.get("turnover") or {}
    hops = turnover.get("hops_ms") or {}
    if hops:
        lines += [
            "", "### Where a slot turnover's time goes",
            "",
            "Each turnover split at the system's own records (medians and p99 over the same pairs): the stand-in's",
            "completion time (it sends the webhook at once), the webhook's arrival (`webhook_deliveries.received_at`), the",
            "commit that took the finished task out of its slot, the commit of the scheduling pass that granted the slot",
            "to the next task (`pg_xact_commit_timestamp` of its `task_events` row), and the create's arrival at the stand-in.",
            "",
            "| hop | p50 | p99 |", "|---|---|---|",
        ]
        names = {"sent_to_received": "webhook sent → received by the webhook service",
                 "received_to_slot_freed": "received → slot freed (commit; the output is stored first)",
                 "slot_freed_to_claimed": "slot freed → next task claimed (commit of the pass)",
                 "claimed_to_create_received": "claimed → create received at the stand-in"}
        for key, label in names.items():
            s = hops.get(key) or {}
            lines.append(f"| {label} | {_n(s.get('p50'), 1)} ms | {_n(s.get('p99'), 1)} ms |")

    depth = reelay.get("depth") or {}
    if depth:
        lines += ["", "### At depth", "",
                  "Submit → create one submission at a time (each sent when the last one's create has arrived), then at",
                  "20/s with the HTTP answer; 'submitted' answers are 202s given without the scheduler's",
                  "verdict (none within `ADMISSION_TIMEOUT_MS`, 2 s); 'behind' is how long after the last submission was sent",
                  "the last create arrived. Passes: the claim transactions that granted a slot, during the timed submissions",
                  "(the backlog not yet due) and then with the whole backlog due.",
                  "",
                  "| pending | seeded in | submit → create, one at a time | submit → create, 20/s | HTTP p50 / p99 | 'submitted' | behind | passes during it | passes, backlog due |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for key in sorted(depth, key=int):
            d = depth[key]
            due = d.get("due_backlog") or {}
            lines.append(
                f"| {int(key):,} | {d.get('seed_seconds')} s | {_ms(d.get('one_at_a_time_ms'), 'p50', 'max')} "
                f"(p50 / max of {(d.get('one_at_a_time_ms') or {}).get('n', 0)}) | {_summary_line(d.get('submit_to_create_ms'))} | "
                f"{_ms(d.get('http_ms'), 'p50', 'p99')} | {d.get('answered_submitted', 0)} of {d.get('sent', '—')} | "
                f"{_n(d.get('last_create_after_last_send_s'), 2)} s | {_ms(d.get('scheduling_pass_ms'), 'p50', 'p99')} | "
                f"{_summary_line(due.get('scheduling_pass_ms'))} ({due.get('tasks_claimed', '—')} tasks in "
                f"{due.get('window_s', '—')} s) |")

    peaks = reelay.get("peak_rss_mib") or {}
    if peaks:
        lines += ["", "### Peak resident memory", "",
                  "VmHWM of each process just before it was stopped, the highest over every phase (each phase starts",
                  "its processes afresh): " + ", ".join(f"{k} {v:.1f} MiB" for k, v in peaks.items()) + "."]

    lines += [
        "", "## What is measured, and how", "",
        "`scripts/bench` (the driver is `Benchmarks/bench/`, Python, in a virtualenv it makes in `.reelay/bench-venv`",
        "from `Benchmarks/requirements.txt`) builds the release binaries (`swift build -c release`), starts PostgreSQL and",
        "RabbitMQ with `scripts/servers.sh` as an instance of their own (`REELAY_PORT_OFFSET`, default 500; state in",
        "`.reelay/bench/`), drops and migrates the database, creates 200 users of tier pro with one API key each",
        "(`reelay keys create`), then runs the phases below. Each Reelay phase empties the task tables and every queue,",
        "starts the Replicate stand-in and the four services with that phase's settings (the environment of `scripts/dev`",
        "plus the settings named below, nothing inherited from the shell), measures, and stops them by their process ids.",
        "At the end it stops everything it started (PostgreSQL and RabbitMQ too, unless they were running before).",
        "",
        "In every Reelay phase: `MAX_CONCURRENT_TASKS=5`; `MAX_USER_ACTIVE_TASKS=1000000`, `MAX_QUEUE_SIZE=10000000`,",
        "`SUBMIT_RATE_PER_MIN=SUBMIT_BURST=10000000`, so that no limit a product sets refuses a measured submission (with",
        "the default of 3 active tasks per user, 200 users could have only 600 tasks queued). Submissions are",
        "`{\"prompt\": \"a red fox running through snow\", \"input_image_url\": \"https://example.com/fox.png\"}` over HTTP/1.1",
        "keep-alive (aiohttp), each with the next of the 200 keys in turn. Times are the machine's clock, read by the driver,",
        "by the stand-in (its own `created_at` and `completed_at`, microseconds) and by PostgreSQL.",
        "",
        f"1. **Intake.** {meta['clients']} clients, each sending its next submission when the last is answered, for",
        f"   {plan['intake_warmup']} s of warm-up and {plan['intake_seconds']} s measured, starting from an empty queue. The figure is",
        "   the answers `202` with status `pending` (the scheduler's verdict: admitted and persisted; checked against the rows)",
        "   received in the measured seconds, per second; the HTTP percentiles are of the requests sent in them. The stand-in",
        "   runs each prediction 1 s (its default), so 5 run all the time, at the default create rate (600/min).",
        "2. **Slot turnover.** A backlog of "
        f"{plan['turnover_tasks']} tasks is admitted while the dispatcher is stopped (the scheduler grants the 5 slots and",
        "   their create commands wait in the queue); then the dispatcher starts. Predictions run "
        f"{plan['turnover_run_ms']} ms. From the stand-in's own",
        "   record, the i-th completion (its webhook is sent at that moment) is paired with the (5+i)-th create: each create",
        "   after the first five needs a slot freed by a completion, and they are paired in order (when two completions",
        "   come within a few milliseconds, their partners may be swapped). `REPLICATE_CREATE_RATE_PER_MIN` and the",
        "   stand-in's own create limit are raised",
        "   to 1,000,000/min so the rate limiter never waits (its statements still run).",
        f"3. **Submit → create with a free slot.** {meta['rate_per_s']:.0f} submissions a second on schedule (open loop) for",
        f"   {plan['paced_seconds']} s; predictions are instant (`STANDIN_RUN_MS=1`), so a slot is free when a submission arrives",
        "   (the stand-in's peak of running predictions is in the JSON). From the moment the driver sends the request to",
        "   the stand-in's `created_at` of that task's prediction (the task id is in the prediction's webhook URL). Create",
        "   rates raised as in 2.",
        "4. **At depth.** The pending tasks are seeded straight into PostgreSQL with SQL (`Benchmarks/bench/reelay_side.py`,",
        "   `seed`): free-tier tasks (priority 10) of 1,000 seeded users, `created_at` spread over the last hour, each with",
        "   its admission row in `task_events`, `retry_count` and `attempt` 1 and `not_before` a day ahead: valid tasks",
        "   waiting out a retry backoff, counted by every queue figure, admission count and queue position, but leaving the",
        "   5 slots to the measured submissions (pro tier, priority 200). These are timed first one at a time",
        f"   ({plan.get('singles', 10)} submissions, each sent once the last one's create has arrived: the cost of depth alone),",
        f"   then as in 3 ({plan['depth_seconds']} s at {meta['rate_per_s']:.0f}/s: whether the system keeps up at that depth).",
        "   `VACUUM ANALYZE` follows the seeding. Then the whole backlog is made due (`UPDATE ... SET not_before = now()`,",
        "   `VACUUM ANALYZE`), the services are started again, and every scheduling pass that grants a slot in the next"
        f" {plan['pass_window']} s is",
        "   timed from its transaction's start (`task_events.at`, which is `now()`) to its commit",
        "   (`pg_xact_commit_timestamp`, `track_commit_timestamp` is on in `scripts/servers.sh`): each such pass sorts the",
        "   whole backlog to pick the next task. The passes during the timed submissions are reported too.",
        "5. **Create rate.** `REPLICATE_CREATE_RATE_PER_MIN=120`, instant predictions, a backlog of",
        f"   {(reelay.get('rate') or {}).get('backlog', '—')} tasks submitted at once; the stand-in's create times over",
        f"   {plan['rate_observe']} s; the most creates in any window of 60 s starting at a create, and in the first minute.",
        "6. **Peak RSS.** `VmHWM` from `/proc/<pid>/status` of each service just before it is stopped, in every phase.",
        "7. **Comparisons, same servers, same run.**",
        f"   - pgbench: `{(pgbench['reps'][0]['command'] if pgbench['reps'] else 'pgbench -n -M prepared ...')}` where insert.sql",
        "     is `INSERT INTO bench_insert (user_uuid, prompt) VALUES (gen_random_uuid(), 'a red fox running through snow');`",
        "     (table: bigserial key, uuid, text, timestamptz default now()), in a database of its own on the same server;",
        "     the figure is pgbench's tps without connection time.",
        f"   - Celery {versions.get('celery', '5.x')} on the same RabbitMQ (`Benchmarks/bench/celery_app.py`): publisher confirms on, so",
        "     an enqueue counts once the broker has it as a Reelay submission counts once persisted; `task_acks_late` and",
        "     `worker_prefetch_multiplier=1`, so a worker process takes its next task when it has finished one, as a slot",
        "     does; the queue is Celery's default (durable, persistent messages). Enqueue throughput: "
        f"{meta['clients']} threads over",
        f"     {min(meta['machine']['nproc'], meta['clients'])} processes calling `send_task` for {plan['celery_seconds']} s, no worker running.",
        "     Enqueue → start: one producer at 20/s, a prefork worker of 5 processes, a no-op task noting when it starts.",
        f"     Finish → next start: {plan['turnover_tasks']} tasks of {plan['turnover_run_ms']} ms queued before the worker starts;",
        "     in each worker process, from one task's end to the next one's start.",
        "",
        "Not measured here: several dispatchers or schedulers at once (the issue asks the rolling-minute limit of one or",
        "many dispatchers; this run has one of each), a lost webhook's reconcile delay (the chaos run shows it), and",
        "profiles: this tool measures, it does not explain; `perf` or `valgrind --tool=callgrind` on the services during",
        "a phase does.",
        "",
        "## Machine and versions",
        "",
        f"- CPU: {machine['cpu_model']}, `nproc` {machine['nproc']}, {machine.get('memory_gib')} GiB; {machine.get('os')}, "
        f"kernel {machine.get('kernel')}",
        f"- Load before the run: {busy} % of all cores busy, load average "
        f"{', '.join(str(x) for x in meta.get('loadavg_before', []))}"
        + (f"; during it {min(loads):.2f}–{max(loads):.2f}" if loads else ""),
        f"- Reelay {versions.get('reelay_commit', '?')}, release build, {versions.get('swift', '?')}",
        f"- PostgreSQL {versions.get('postgresql', '?')} (as `scripts/servers.sh` runs it: fsync "
        f"{versions.get('postgresql_settings', {}).get('fsync', '?')}, synchronous_commit "
        f"{versions.get('postgresql_settings', {}).get('synchronous_commit', '?')}, max_connections 200); {versions.get('pgbench', '')}",
        f"- RabbitMQ {versions.get('rabbitmq', '?')}",
        f"- Python {versions.get('python', '?')}, Celery {versions.get('celery', '?')}, kombu {versions.get('kombu', '?')}, "
        f"py-amqp {versions.get('py-amqp', '?')}, aiohttp {versions.get('aiohttp', '?')}, psycopg {versions.get('psycopg', '?')}",
        "",
        "## Running it",
        "",
        "```sh",
        "scripts/bench            # the full run (about 10 minutes after the build); rewrites BENCHMARKS.md and Benchmarks/results.json",
        "scripts/bench --quick    # a few minutes; writes .reelay/bench/BENCHMARKS-quick.md and results-quick.json",
        "scripts/bench --help     # --depths, --reps, --offset, --only, --no-build, --keep-servers, --note, --from-json",
        "```",
        "",
        "Progress goes to stderr as it runs; the table to stdout. Logs of every process are in",
        "`.reelay/bench/<instance>/bench-logs/`.",
        "",
    ]
    return "\n".join(lines)
