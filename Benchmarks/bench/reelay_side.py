"""Reelay's figures, each in a phase of its own: the services are (re)started with the phase's settings on emptied
tables and queues, measured over HTTP as a frontend and at the stand-in as Replicate, and stopped again (their peak
resident set, VmHWM, is read just before)."""

from __future__ import annotations

import asyncio
import collections
import time

from . import loads
from .progress import log
from .stats import max_in_window, summary_ms
from .system import MODEL, Instance, wait_until

# Every phase: 5 slots (the default), and limits that never refuse a measured submission (the per-user and queue limits
# and the per-key submit rate are what a product sets; here they would only cut the measurement short).
COMMON = {
    "MAX_CONCURRENT_TASKS": "5",
    "MAX_USER_ACTIVE_TASKS": "1000000",
    "MAX_QUEUE_SIZE": "10000000",
    "SUBMIT_RATE_PER_MIN": "10000000",
    "SUBMIT_BURST": "10000000",
}
# Phases that time the hand-off: the create rate toward Replicate (ours and the stand-in's) is out of the way.
UNTHROTTLED = {"REPLICATE_CREATE_RATE_PER_MIN": "1000000"}
STANDIN_UNTHROTTLED = {"STANDIN_CREATE_RATE_PER_MIN": "1000000"}

SEED_USER_PREFIX = "00000000-0000-4000-9000-"
SEED_USERS = 1000


class ReelayBench:
    def __init__(self, instance: Instance, rss: dict):
        self.inst = instance
        self.rss = rss  # phase -> process -> {VmHWM, VmRSS, cpu_ms}
        self.url = f"http://127.0.0.1:{instance.gateway_port}"

    # ----- plumbing -----

    def _phase(self, name: str, settings: dict, standin: dict, body, without: tuple[str, ...] = ()):
        self.inst.reset_state()
        return self._run(name, settings, standin, body, without)

    def _run(self, name: str, settings: dict, standin: dict, body, without: tuple[str, ...] = ()):
        self.inst.start(settings, standin, without)
        try:
            return body()
        finally:
            samples = self.inst.stop_all()
            previous = self.rss.get(name, {})
            for process, status in samples.items():
                if process in previous and previous[process].get("VmHWM", 0) > status.get("VmHWM", 0):
                    continue
                previous[process] = status
            self.rss[name] = previous

    def _counts(self) -> dict[str, int]:
        with self.inst.db() as conn:
            return dict(conn.execute("SELECT status, count(*) FROM video_tasks GROUP BY status").fetchall())

    def _events(self, since: float, to_status: str | None = None, task_ids: list[str] | None = None) -> list[dict]:
        """History rows since `since`: when their transaction began (`at` is now()) and when it committed
        (track_commit_timestamp is on in this PostgreSQL), with the transaction id."""
        query = """
            SELECT task_id::text, from_status, to_status, extract(epoch FROM at)::float8,
                   extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8, xmin::text
            FROM task_events WHERE at >= to_timestamp(%s)"""
        params: list = [since]
        if to_status:
            query += " AND to_status = %s"
            params.append(to_status)
        if task_ids is not None:
            query += " AND task_id = ANY(%s::uuid[])"
            params.append(task_ids)
        with self.inst.db() as conn:
            rows = conn.execute(query, params).fetchall()
        return [dict(task=r[0], from_status=r[1], to_status=r[2], at=r[3], committed=r[4], xid=r[5]) for r in rows]

    @staticmethod
    def _passes(events: list[dict]) -> list[float]:
        """Durations (BEGIN to COMMIT) of the claim transactions that wrote these 'dispatching' rows, one per transaction."""
        by_xid = {}
        for event in events:
            if event["committed"] is not None:
                by_xid[event["xid"]] = event["committed"] - event["at"]
        return list(by_xid.values())

    def _warm(self, count: int = 10) -> None:
        """A few tasks all the way through (connections, caches); then the stand-in forgets them, so its counters (peak
        of running predictions) and its list hold the measured tasks only."""
        answers = asyncio.run(loads.burst(self.url, self.inst.keys, count, clients=count))
        ids = [a.task_id for a in answers if a.status == 202]
        if len(ids) < count:
            raise RuntimeError(f"warm-up: {count - len(ids)} of {count} submissions refused: "
                               f"{[a.error for a in answers if a.status != 202][:2]}")
        if not wait_until(lambda: self._done(ids, terminal=True) == len(ids), 120):
            raise RuntimeError("warm-up: the tasks did not finish within 120 s")
        self.inst.standin_post("/_standin/reset")

    def _done(self, ids: list[str], terminal: bool = False) -> int:
        """How many of these tasks have had their create (or, with `terminal`, have finished)."""
        unfinished = "('pending', 'dispatching', 'processing')" if terminal else "('pending', 'dispatching')"
        with self.inst.db() as conn:
            return conn.execute(
                f"SELECT count(*) FROM video_tasks WHERE id = ANY(%s::uuid[]) AND status NOT IN {unfinished}",
                [ids]).fetchone()[0]

    # ----- 1. intake -----

    def intake(self, rep: int, clients: int, warmup: float, duration: float) -> dict:
        def body() -> dict:
            result = asyncio.run(loads.closed_loop(self.url, self.inst.keys, clients, warmup, duration,
                                                   f"intake rep {rep}"))
            answers, (start, end) = result["answers"], result["window"]
            answered = [a for a in answers if start <= a.answered <= end]
            admitted = [a for a in answered if a.admitted]
            timed = [a.seconds for a in answers if a.sent >= start and a.answered <= end]
            statuses = collections.Counter(
                f"{a.status} {a.task_status}" if a.status == 202 else str(a.status) for a in answered)
            with self.inst.db() as conn:
                persisted = conn.execute(
                    "SELECT count(*) FROM video_tasks WHERE id = ANY(%s::uuid[]) AND status <> 'rejected'",
                    [[a.task_id for a in admitted]]).fetchone()[0]
                depth = conn.execute("SELECT count(*) FROM video_tasks WHERE status = 'pending'").fetchone()[0]
            errors = collections.Counter(a.error[:120] for a in answered if a.status != 202 and a.error)
            return {
                "per_second": round(len(admitted) / duration, 1),
                "admitted": len(admitted), "persisted_checked": persisted, "answers": len(answered),
                "statuses": dict(statuses), "errors": dict(errors.most_common(3)),
                "http_ms": summary_ms(timed), "pending_at_end": depth, "clients": clients, "duration_s": duration,
                "warmup_s": warmup,
            }

        return self._phase(f"intake-{rep}", COMMON, {"STANDIN_RUN_MS": "1000"}, body)

    # ----- 2. slot turnover -----

    def turnover(self, tasks: int, run_ms: int) -> dict:
        """A backlog of `tasks` is admitted while the dispatcher is stopped (the scheduler grants the 5 slots and the
        create commands wait in their queue), then the dispatcher starts: every later create follows a completion."""
        settings = dict(COMMON, **UNTHROTTLED)

        def body() -> dict:
            answers = asyncio.run(loads.burst(self.url, self.inst.keys, tasks))
            refused = [a for a in answers if not a.admitted]
            if refused:
                raise RuntimeError(f"turnover: {len(refused)} of {tasks} submissions not admitted: {refused[0]}")
            wait_until(lambda: sum(self._counts().get(s, 0) for s in ("pending", "dispatching")) == tasks, 30)
            begin = time.time()
            self.inst.start_service("dispatcher", settings)
            expected = tasks / 5 * run_ms / 1000
            log(f"  turnover: {tasks} tasks queued; dispatcher started (about {expected:.0f} s of predictions)")
            ok = wait_until(lambda: self._counts().get("completed", 0) >= tasks, expected * 4 + 60, every=0.5)
            predictions = self.inst.predictions()
            return self._turnover_figures(predictions, begin, tasks, ok)

        return self._phase("turnover", settings, {"STANDIN_RUN_MS": str(run_ms), **STANDIN_UNTHROTTLED}, body,
                           without=("dispatcher",))

    def _turnover_figures(self, predictions: list[dict], begin: float, tasks: int, complete: bool) -> dict:
        creates = sorted(predictions, key=lambda p: p["_created"])
        completions = sorted((p for p in predictions if p["_completed"]), key=lambda p: p["_completed"])
        slots = 5
        pairs = []
        for i, finished in enumerate(completions):
            if slots + i >= len(creates):
                break
            pairs.append((finished, creates[slots + i]))
        gaps = [nxt["_created"] - done["_completed"] for done, nxt in pairs]
        early = sum(1 for g in gaps if g < 0)

        # Where the time goes, hop by hop, from the system's own records: the webhook's arrival (webhook_deliveries),
        # the commit that freed the slot, the commit of the claim that granted it again.
        hops = {"sent_to_received": [], "received_to_slot_freed": [], "slot_freed_to_claimed": [],
                "claimed_to_create_received": []}
        with self.inst.db() as conn:
            received = dict(conn.execute(
                "SELECT prediction_id, min(extract(epoch FROM received_at))::float8 FROM webhook_deliveries "
                "WHERE prediction_id IS NOT NULL AND prediction_status IN ('succeeded', 'failed', 'canceled', 'aborted') "
                "GROUP BY prediction_id").fetchall())
        events = self._events(begin - 5)
        freed = {}
        claimed = {}
        for e in events:
            if e["from_status"] in ("dispatching", "processing") and e["to_status"] not in ("dispatching", "processing"):
                freed.setdefault(e["task"], e["committed"])
            if e["to_status"] == "dispatching":
                claimed[e["task"]] = e["committed"]
        for done, nxt in pairs:
            r, f, c = received.get(done["id"]), freed.get(done["_task"]), claimed.get(nxt["_task"])
            if None in (r, f, c):
                continue
            hops["sent_to_received"].append(r - done["_completed"])
            hops["received_to_slot_freed"].append(f - r)
            hops["slot_freed_to_claimed"].append(c - f)
            hops["claimed_to_create_received"].append(nxt["_created"] - c)
        return {
            "webhook_sent_to_next_create_ms": summary_ms(gaps),
            "hops_ms": {name: summary_ms(values) for name, values in hops.items()},
            "tasks": tasks, "predictions": len(predictions), "pairs": len(pairs), "create_before_completion": early,
            "complete": complete,
        }

    # ----- 3 and 4. submit -> create -----

    def _submit_to_create(self, label: str, rate: float, duration: float, drain: float = 120) -> dict:
        answers = asyncio.run(loads.paced(self.url, self.inst.keys, rate, duration, label))
        accepted = [a for a in answers if a.status == 202 and a.task_id]
        ids = [a.task_id for a in accepted]
        missing = len(ids) - self._done(ids)
        if missing > 0:
            log(f"  {label}: waiting (at most {drain:.0f} s) for the creates of {missing} tasks")
        drained = wait_until(lambda: self._done(ids) == len(ids), drain, every=0.5)
        predictions = self.inst.predictions()
        first_create = {}
        for p in predictions:
            if p["_task"] and p["_task"] not in first_create:
                first_create[p["_task"]] = p["_created"]
        latencies = [first_create[a.task_id] - a.sent for a in accepted if a.task_id in first_create]
        passes = self._passes(self._events(answers[0].sent - 1, "dispatching", ids)) if answers else []
        stats = self.inst.standin_get("/_standin/stats")
        return {
            "submit_to_create_ms": summary_ms(latencies),
            "http_ms": summary_ms([a.seconds for a in answers if a.status == 202]),
            "scheduling_pass_ms": summary_ms(passes),
            "sent": len(answers), "accepted": len(accepted), "created": len(latencies),
            "answered_submitted": sum(1 for a in accepted if a.task_status == "submitted"),
            "refused": collections.Counter(str(a.status) for a in answers if a.status != 202),
            "peak_running_at_standin": stats.get("peak_running"), "drained": drained, "rate_per_s": rate,
            # How far behind the creates were when the submissions stopped: the last create after the last send.
            "last_create_after_last_send_s": round(max(first_create.get(a.task_id, 0) for a in accepted)
                                                   - max(a.sent for a in answers), 2) if accepted else None,
        }

    def _one_at_a_time(self, count: int, timeout: float = 60) -> dict:
        """Submit → create with nothing else in flight: each submission is sent once the last one's create has arrived."""
        sent: dict[str, float] = {}

        async def run() -> None:
            async with loads.client_session(self.url, 1) as session:
                for i in range(count):
                    answer = await loads.submit(session, self.inst.keys[i % len(self.inst.keys)])
                    if answer.status != 202 or not answer.task_id:
                        continue
                    sent[answer.task_id] = answer.sent
                    deadline = time.monotonic() + timeout
                    while self._done([answer.task_id]) == 0 and time.monotonic() < deadline:
                        await asyncio.sleep(0.01)

        asyncio.run(run())
        first_create = {}
        for p in self.inst.predictions():
            if p["_task"] in sent and p["_task"] not in first_create:
                first_create[p["_task"]] = p["_created"]
        return summary_ms([first_create[t] - sent[t] for t in sent if t in first_create])

    def free_slot(self, rate: float, duration: float) -> dict:
        settings = dict(COMMON, **UNTHROTTLED)

        def body() -> dict:
            self._warm()
            return self._submit_to_create("submit->create", rate, duration)

        return self._phase("free-slot", settings, {"STANDIN_RUN_MS": "1", **STANDIN_UNTHROTTLED}, body)

    # ----- 4. at depth -----

    def seed(self, pending: int) -> float:
        """`pending` valid pending tasks straight into PostgreSQL: free-tier tasks of 1,000 users, created over the last
        hour, each with its admission history row, retried once and waiting out their backoff (not_before a day
        ahead), so they count in every queue figure and every scan but leave the 5 slots to the measured submissions."""
        began = time.monotonic()
        with self.inst.db() as conn:
            conn.execute(
                f"""INSERT INTO users (id, tier)
                    SELECT ('{SEED_USER_PREFIX}' || lpad(to_hex(g), 12, '0'))::uuid, 'free'
                    FROM generate_series(1, {SEED_USERS}) g ON CONFLICT (id) DO NOTHING""")
            conn.execute(
                f"""INSERT INTO video_tasks (id, user_uuid, status, input_image_url, prompt, priority, retry_count, attempt,
                        created_at, updated_at, model, tier, not_before)
                    SELECT gen_random_uuid(), ('{SEED_USER_PREFIX}' || lpad(to_hex(1 + g %% {SEED_USERS}), 12, '0'))::uuid,
                        'pending', 'https://example.com/seed.png', 'a seeded backlog task, number ' || g, 10, 1, 1,
                        now() - interval '1 hour' + g * (interval '3600 seconds' / {pending}), now(), %s, 'free',
                        now() + interval '1 day'
                    FROM generate_series(1, {pending}) g""", [MODEL])
            conn.execute(
                """INSERT INTO task_events (task_id, at, from_status, to_status, attempt, reason)
                   SELECT id, created_at, NULL, 'pending', 0, 'admitted with priority 0' FROM video_tasks
                   WHERE status = 'pending'""")
            conn.execute("VACUUM ANALYZE video_tasks")
            conn.execute("VACUUM ANALYZE task_events")
        return time.monotonic() - began

    def depth(self, pending: int, rate: float, duration: float, pass_window: float, drain: float = 120,
              singles: int = 10) -> dict:
        settings = dict(COMMON, **UNTHROTTLED)
        standin = {"STANDIN_RUN_MS": "1", **STANDIN_UNTHROTTLED}
        name = f"depth-{pending}"
        self.inst.reset_state()
        log(f"  depth {pending:,}: seeding {pending:,} pending tasks in PostgreSQL")
        seconds = self.seed(pending)
        log(f"  depth {pending:,}: seeded in {seconds:.1f} s")

        def measure() -> dict:
            self._warm()
            log(f"  depth {pending:,}: {singles} submissions one at a time")
            alone = self._one_at_a_time(singles)
            measured = self._submit_to_create(f"submit->create at {pending:,}", rate, duration, drain)
            measured["one_at_a_time_ms"] = alone
            return measured

        result = self._run(name, settings, standin, measure)
        result["seed_seconds"] = round(seconds, 1)

        # The same backlog, now due: every scheduling pass sorts all of it to grant a slot.
        began = time.monotonic()
        with self.inst.db() as conn:
            conn.execute("UPDATE video_tasks SET not_before = now() WHERE status = 'pending' AND not_before > now()")
            conn.execute("VACUUM ANALYZE video_tasks")
        log(f"  depth {pending:,}: backlog made due in {time.monotonic() - began:.1f} s; "
            f"timing scheduling passes for {pass_window:.0f} s")

        def passes() -> dict:
            since = time.time()
            time.sleep(pass_window)
            events = self._events(since, "dispatching")
            durations = self._passes(events)
            return {"scheduling_pass_ms": summary_ms(durations), "tasks_claimed": len(events),
                    "window_s": pass_window}

        result["due_backlog"] = self._run(name, settings, standin, passes)
        result["pending"] = pending
        return result

    # ----- 5. create rate -----

    def create_rate(self, per_minute: int, observe: float) -> dict:
        settings = dict(COMMON, REPLICATE_CREATE_RATE_PER_MIN=str(per_minute))
        backlog = int(per_minute * observe / 60 * 1.3) + 50

        def body() -> dict:
            begin = time.time()
            answers = asyncio.run(loads.burst(self.url, self.inst.keys, backlog))
            admitted = sum(1 for a in answers if a.admitted)
            while time.time() < begin + observe:
                time.sleep(min(10, begin + observe - time.time()))
                creates = self.inst.standin_get("/_standin/stats").get("creates")
                log(f"  create rate: {time.time() - begin:3.0f} s of {observe:.0f}, {creates} creates at the stand-in")
            predictions = self.inst.predictions()
            times = sorted(p["_created"] for p in predictions)
            most, start = max_in_window(times, 60)
            first = times[0] if times else begin
            return {
                "max_in_any_60s": most,
                "window_start_after_first_create_s": round(start - first, 2) if start else None,
                "first_minute": sum(1 for t in times if t < first + 60),
                "first_10s": sum(1 for t in times if t < first + 10),
                "creates": len(times), "observed_s": observe, "backlog": backlog, "admitted": admitted,
                "limit_per_min": per_minute,
                "fully_observed_minutes": round((begin + observe - first) / 60, 2),
            }

        return self._phase("create-rate", settings, {"STANDIN_RUN_MS": "1"}, body)
