"""Measure (not assert) how soon a long-poll answers after a change: `python -m tests.longpoll_latency 100`.

A private redis-server and a live API; each run creates a queued record, holds `GET ?wait=30`, then starts the
task from this process (as a worker would) and times the answer from that moment.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import threading
import time
import uuid

import httpx
from redis.asyncio import Redis

from shared.store import StatusStore
from tests.processes import start_api, start_redis


def measure(runs: int) -> list[float]:
    redis = start_redis()
    url = f"{redis.extra['url']}/0"
    api = start_api({"REDIS_URL": url, "EXECUTOR": "background"})
    base = str(api.extra["url"])
    loop = asyncio.new_event_loop()
    store = StatusStore(Redis.from_url(url), ttl_seconds=600)
    latencies: list[float] = []
    try:
        for i in range(runs):
            task_id = str(uuid.uuid4())
            loop.run_until_complete(store.create(task_id, "sleep", "{}", "background"))
            etag = httpx.get(f"{base}/tasks/{task_id}").headers["etag"]
            answered: dict[str, float | str] = {}

            def poll(task_id: str = task_id, etag: str = etag, answered: dict[str, float | str] = answered) -> None:
                resp = httpx.get(f"{base}/tasks/{task_id}?wait=30", headers={"If-None-Match": etag}, timeout=40)
                answered.update(at=time.perf_counter(), state=resp.json()["state"])

            poller = threading.Thread(target=poll)
            poller.start()
            time.sleep(0.15)  # the poll is waiting by now
            changed_at = time.perf_counter()
            loop.run_until_complete(store.claim(task_id, "elsewhere:1"))
            poller.join(40)
            if answered.get("state") != "running":
                raise RuntimeError(f"run {i}: the long-poll answered {answered}")
            latencies.append((float(answered["at"]) - changed_at) * 1000)
    finally:
        loop.run_until_complete(store.redis.aclose())
        api.stop()
        redis.stop()
    return sorted(latencies)


if __name__ == "__main__":
    found = measure(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
    p90 = found[max(0, int(0.9 * len(found)) - 1)]
    print(f"runs={len(found)} p50={statistics.median(found):.1f} ms p90={p90:.1f} ms max={found[-1]:.1f} ms")
