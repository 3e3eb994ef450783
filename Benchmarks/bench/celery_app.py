"""The Celery side of the comparison: one task that notes when it was enqueued, started and finished.

Settings, chosen to match what Reelay promises for a video task (none is Celery's default):
- publisher confirms (broker_transport_options confirm_publish): an enqueue counts once the broker has taken it, as a
  Reelay submission counts once it is admitted and persisted;
- task_acks_late with worker_prefetch_multiplier=1: a worker process takes the next task only when it has finished its
  current one (the setting Celery's documentation recommends for long tasks), as a Reelay slot takes the next task only
  when its prediction has finished.
The queue is Celery's default kind (durable classic queue, persistent messages).
"""

import os
import time

from celery import Celery

QUEUE = "reelay-bench-celery"

app = Celery("reelay_bench", broker=os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"))
app.conf.update(
    task_default_queue=QUEUE,
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    broker_transport_options={"confirm_publish": os.environ.get("BENCH_CELERY_CONFIRM", "1") == "1"},
    broker_pool_limit=64,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_send_task_events=False,
    task_serializer="json",
    accept_content=["json"],
)

_out = None


@app.task(name="bench.run")
def run(enqueued_at: float, sleep_s: float = 0.0) -> None:
    started = time.time()
    if sleep_s:
        time.sleep(sleep_s)
    finished = time.time()
    global _out
    if _out is None:
        _out = open(os.path.join(os.environ["BENCH_CELERY_OUT"], f"{os.getpid()}.log"), "a", buffering=1)
    _out.write(f"{enqueued_at!r} {started!r} {finished!r}\n")
