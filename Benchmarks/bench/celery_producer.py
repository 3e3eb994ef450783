"""One enqueueing process of the Celery throughput run: `--threads` threads, each enqueueing one task after another
(each waits for the broker's confirm) from `--start` (epoch seconds) for `--duration` seconds. Prints a JSON line with
how many enqueues completed inside that window."""

import argparse
import json
import threading
import time

from .celery_app import app

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, required=True)
parser.add_argument("--start", type=float, required=True)
parser.add_argument("--duration", type=float, required=True)
args = parser.parse_args()

end = args.start + args.duration
counts = [0] * args.threads
after = [0] * args.threads


def client(index: int) -> None:
    # Connect before the start, so the window measures enqueueing and not connection set-up.
    with app.producer_or_acquire() as producer:
        producer.connection.ensure_connection()
    while time.time() < args.start:
        time.sleep(0.001)
    while True:
        app.send_task("bench.run", args=[time.time(), 0.0])
        now = time.time()
        if now > end:
            after[index] += 1
            return
        counts[index] += 1


threads = [threading.Thread(target=client, args=(i,)) for i in range(args.threads)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps({"count": sum(counts), "after_window": sum(after)}))
