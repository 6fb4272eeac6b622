"""Listing cost with many finished tasks kept: `GET /tasks?...` latency at two sizes, one client, in sequence.

A `background` API of its own on a database of its own (emptied before and after) is filled with no-op
tasks by the lean client, with a few tasks of a rarely used name (`sleep` of 0 s) among the first ones and
no failed task at all, so each filter has something to look for: `state=failed` finds nothing, `name=sleep`
finds the same few at both sizes, and the unfiltered first page is the newest 50. The second size adds
tasks to the first; only the number of kept tasks changes between the two measurements.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis

from bench import procs, rates
from bench.loadgen import request_bytes, send_all, sequential
from bench.plan import Listing
from bench.stats import latency_summary, ratio
from bench.systems import LISTING_DB_OFFSET, SYSTEMS, Running, start

FILL_CONNECTIONS = 16
NAMED = "sleep"  # the rarely used task name (a built-in, run with 0 seconds)
ENDPOINTS = {  # key -> (query, what the answer must hold)
    "state": "state=failed&limit=50",
    "name": f"name={NAMED}&limit=50",
    "first_page": "limit=50",
}


def _fill_requests(url: str, total: int, named: int) -> Iterator[bytes]:
    """`total` POSTs: no-ops, with `named` `sleep` tasks spread evenly among them."""
    noop = request_bytes("POST", f"{url}/tasks/noop", b'{"value":1}')
    sleep = request_bytes("POST", f"{url}/tasks/{NAMED}", b'{"seconds":0.0}')
    every = total // named if named else 0
    for i in range(total):
        yield sleep if every and i % every == every // 2 and i // every < named else noop


async def _fill(system: Running, total: int, named: int) -> dict[str, float]:
    """Submit `total` tasks and wait until they have run (the newest page all ended)."""
    started = time.perf_counter()
    result = await send_all(system.url, _fill_requests(system.url, total, named), FILL_CONNECTIONS)
    if result.ok != total:
        raise RuntimeError(f"listing fill: {total - result.ok} of {total} POSTs refused ({result.statuses})")
    for body in result.last_bodies:  # each connection's tasks run in order: its last one ends last
        await rates.wait_done(system, json.loads(body)["id"])
    page = request_bytes("GET", f"{system.url}/tasks?limit=50")
    deadline = time.monotonic() + 60
    while True:
        timed = await sequential(system.url, page, 1, 0, warmup=0)
        states = {item["state"] for item in json.loads(timed.last_body)["items"]}
        if states <= {"succeeded", "failed", "cancelled", "lost"} or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    seconds = time.perf_counter() - started
    return {"tasks": total, "seconds": seconds, "rate_per_s": total / seconds}


async def _time_endpoints(system: Running, plan: Listing) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, query in ENDPOINTS.items():
        request = request_bytes("GET", f"{system.url}/tasks?{query}")
        timed = await sequential(system.url, request, plan.requests, plan.budget_s, warmup=1)
        body = json.loads(timed.last_body) if timed.statuses.get(200) else {}
        out[key] = {
            **latency_summary(timed.latencies),
            "statuses": {str(status): n for status, n in timed.statuses.items()},
            "items": len(body.get("items", [])),
        }
    return out


async def measure(
    redis_base: str, redis_db: int, log_dir: Path, plan: Listing, *, private_redis: bool, say: Callable[[str], None]
) -> dict[str, Any]:
    """Fill to `plan.small`, time each listing, fill up to `plan.large`, time them again."""
    spec = dataclasses.replace(SYSTEMS["background"], name="listing", redis_db_offset=LISTING_DB_OFFSET)
    db = redis.Redis.from_url(f"{redis_base}/{redis_db + LISTING_DB_OFFSET}")
    if not private_redis and db.dbsize():
        db.close()
        raise RuntimeError(f"database {redis_db + LISTING_DB_OFFSET} of REDIS_URL is not empty: not emptying it")
    db.flushdb()
    system = start(spec, redis_base, redis_db, 1, log_dir)
    sizes: dict[str, Any] = {}
    try:
        procs.wait_http(system.api)
        kept = 0
        for size in (plan.small, plan.large):
            say(f"listing: filling to {size:,} kept tasks")
            fill = await _fill(system, size - kept, plan.named if kept == 0 else 0)
            kept = size
            say(f"listing: timing GET /tasks with {size:,} kept")
            sizes[str(size)] = {"fill": fill, "endpoints": await _time_endpoints(system, plan)}
    finally:
        system.stop()
        db.flushdb()
        db.close()
    small, large = sizes[str(plan.small)]["endpoints"], sizes[str(plan.large)]["endpoints"]
    return {
        "small": plan.small,
        "large": plan.large,
        "named": plan.named,
        "failed": 0,
        "requests": plan.requests,
        "budget_s": plan.budget_s,
        "queries": ENDPOINTS,
        "sizes": sizes,
        "p50_ratio": {key: ratio(large[key]["p50_ms"], small[key]["p50_ms"]) for key in ENDPOINTS},
    }
