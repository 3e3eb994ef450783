"""HTTP load on the gateway's POST /v1/tasks, as a frontend would send it: closed loop (N clients, each sending its next
submission when the previous one is answered), paced (a steady rate, each submission sent on schedule whatever the
answers do) and a burst (a backlog as fast as N clients can)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import aiohttp

from .progress import log

SUBMISSION = {"prompt": "a red fox running through snow", "input_image_url": "https://example.com/fox.png"}
BODY = json.dumps(SUBMISSION).encode()


@dataclass
class Answer:
    sent: float  # time.time() just before the request was written
    answered: float  # time.time() when the whole answer was read
    status: int  # HTTP status, 0 for a transport error
    task_id: str | None = None
    task_status: str | None = None  # "pending" (admitted and persisted), "submitted" (no verdict in time), ...
    error: str | None = None

    @property
    def seconds(self) -> float:
        return self.answered - self.sent

    @property
    def admitted(self) -> bool:
        return self.status == 202 and self.task_status not in (None, "submitted")


def client_session(url: str, limit: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=limit, ttl_dns_cache=None, enable_cleanup_closed=True)
    return aiohttp.ClientSession(base_url=url, connector=connector, timeout=aiohttp.ClientTimeout(total=60))


async def submit(session: aiohttp.ClientSession, key: str) -> Answer:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    sent = time.time()
    try:
        async with session.post("/v1/tasks", data=BODY, headers=headers) as response:
            raw = await response.read()
            answered = time.time()
            answer = Answer(sent, answered, response.status)
            if response.status == 202:
                task = json.loads(raw)
                answer.task_id = str(task.get("id", "")).lower() or None
                answer.task_status = task.get("status")
            else:
                answer.error = raw[:200].decode(errors="replace")
            return answer
    except (aiohttp.ClientError, asyncio.TimeoutError) as error:
        return Answer(sent, time.time(), 0, error=repr(error))


async def _ticker(label: str, answers: list[Answer], until: float) -> None:
    started = time.monotonic()
    while until - time.monotonic() > 1:
        await asyncio.sleep(min(5.0, until - time.monotonic()))
        done = len(answers)
        ok = sum(1 for a in answers if a.admitted)
        log(f"  {label}: {time.monotonic() - started:4.0f} s, {done} answers, {ok} admitted")


async def closed_loop(url: str, keys: list[str], clients: int, warmup: float, duration: float, label: str) -> dict:
    """`clients` concurrent clients for warmup + duration seconds; keys are used round robin across all requests."""
    answers: list[Answer] = []
    async with client_session(url, clients) as session:
        start = time.time()
        window_start, window_end = start + warmup, start + warmup + duration
        stop_at = time.monotonic() + warmup + duration

        async def client(index: int) -> None:
            n = index
            while time.monotonic() < stop_at:
                answers.append(await submit(session, keys[n % len(keys)]))
                n += clients

        ticker = asyncio.create_task(_ticker(label, answers, stop_at))
        await asyncio.gather(*(client(i) for i in range(clients)))
        ticker.cancel()
    return {"answers": answers, "window": (window_start, window_end)}


async def paced(url: str, keys: list[str], rate: float, duration: float, label: str, key_offset: int = 0) -> list[Answer]:
    """One submission every 1/rate seconds for `duration`, each on schedule (open loop)."""
    answers: list[Answer] = []
    count = int(rate * duration)
    async with client_session(url, 256) as session:
        begin = time.monotonic() + 0.2
        pending = []
        ticker = asyncio.create_task(_ticker(label, answers, begin + duration))

        async def one(i: int) -> None:
            answers.append(await submit(session, keys[(key_offset + i) % len(keys)]))

        for i in range(count):
            delay = begin + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.create_task(one(i)))
        await asyncio.gather(*pending)
        ticker.cancel()
    return answers


async def burst(url: str, keys: list[str], count: int, clients: int = 32) -> list[Answer]:
    """`count` submissions as fast as `clients` clients can send them."""
    answers: list[Answer] = []
    async with client_session(url, clients) as session:
        queue = iter(range(count))

        async def client() -> None:
            for i in queue:
                answers.append(await submit(session, keys[i % len(keys)]))

        await asyncio.gather(*(client() for _ in range(clients)))
    return answers
