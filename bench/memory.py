"""Redis memory per retained finished task: the `used_memory` delta over N no-op tasks, divided by N.

Only public surfaces: tasks go in over HTTP, their end is read over HTTP, and Redis is looked at through
`INFO memory` and `DBSIZE`. `used_memory` is server-wide, so the caller runs this for one system at a time
while every other system is idle. A warm-up batch first (scripts loaded, connection pools grown to the
size the measured batch needs), then the baseline, the N tasks, a wait until every one of them has ended,
and the second reading.

Client connections' buffers are part of `used_memory` and swing by hundreds of KB between two readings
(Redis shrinks idle clients' buffers on its own schedule): enough to turn 500 tasks' few hundred KB
negative. `INFO memory` reports them (`mem_clients_normal`), so the figure leaves them out; the raw
`used_memory` delta is kept beside it.

Capped feeds are reported apart: a stream (Redis type `stream`, found with `SCAN TYPE stream`, never by our
key names) that a system trims to a fixed length and age costs memory per task only until it is full, and
nothing more however many tasks are kept; the figure for retained tasks leaves it out, and the stream's
own size is shown beside it (the at-scale arithmetic adds it once, not per task).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import redis

from bench.loadgen import request_bytes, send_all
from bench.systems import Running

CONNECTIONS = 8  # keep-alive connections submitting (and reading back) the tasks
WARMUP_TASKS = 100
SETTLED_BYTES = 4096  # two readings 0.25 s apart closer than this: nothing is moving any more


def _reading(client: redis.Redis) -> dict[str, int]:
    info = client.info("memory")
    return {
        "used_memory": int(info["used_memory"]),
        "mem_clients_normal": int(info.get("mem_clients_normal", 0)),
        "keys": int(client.dbsize()),
        "streams": _streams(client),
    }


def _streams(client: redis.Redis) -> int:
    """Bytes held by the database's streams (capped feeds): `MEMORY USAGE` of each, found by type."""
    total = 0
    for key in client.scan_iter(_type="stream", count=1000):
        total += int(client.memory_usage(key, samples=0) or 0)
    return total


async def _settled(client: redis.Redis, limit_s: float = 3.0) -> dict[str, int]:
    """A reading once memory has stopped moving (Redis finishes resizing a hash table on its own timer)."""
    deadline = time.monotonic() + limit_s
    reading = _reading(client)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        previous, reading = reading, _reading(client)
        data = reading["used_memory"] - reading["mem_clients_normal"]
        if abs(data - (previous["used_memory"] - previous["mem_clients_normal"])) < SETTLED_BYTES:
            break
    return reading


async def _submit(system: Running, tasks: int) -> list[str]:
    post = request_bytes("POST", f"{system.url}/tasks/noop", b'{"value":1}')
    result = await send_all(system.url, [post] * tasks, CONNECTIONS, keep_bodies=True)
    if result.ok != tasks or result.bodies is None:
        raise RuntimeError(f"{system.spec.name}: {tasks - result.ok} of {tasks} POSTs refused ({result.statuses})")
    return [str(json.loads(body)[system.spec.id_field]) for body in result.bodies]


async def wait_all_done(system: Running, task_ids: list[str], limit_s: float = 300) -> None:
    """Read every task until each has ended (over the lean client: thousands of GETs in a second or two)."""
    pending = list(task_ids)
    deadline = time.monotonic() + limit_s
    while pending:
        reads = [request_bytes("GET", f"{system.url}/tasks/{task_id}") for task_id in pending]
        result = await send_all(system.url, reads, CONNECTIONS, keep_bodies=True)
        done = {
            str(body[system.spec.id_field])
            for body in (json.loads(raw) for raw in result.bodies or [])
            if system.spec.id_field in body and system.spec.parse(body).done
        }
        pending = [task_id for task_id in pending if task_id not in done]
        if pending and time.monotonic() > deadline:
            raise TimeoutError(f"{system.spec.name}: {len(pending)} tasks had not ended after {limit_s} s")
        if pending:
            await asyncio.sleep(0.2)


async def measure(system: Running, tasks: int) -> dict[str, Any]:
    """Bytes of Redis memory, and keys, that each finished no-op task leaves behind while it is kept."""
    assert system.redis_url
    client = redis.Redis.from_url(system.redis_url)
    try:
        await wait_all_done(system, await _submit(system, WARMUP_TASKS))
        await asyncio.sleep(0.5)  # late writes after the end (Celery's ack) land before the baseline
        before = await _settled(client)
        started = time.perf_counter()
        await wait_all_done(system, await _submit(system, tasks))
        await asyncio.sleep(0.5)
        after = await _settled(client)
    finally:
        client.close()
    delta = {key: after[key] - before[key] for key in before}
    data = delta["used_memory"] - delta["mem_clients_normal"]
    return {
        "tasks": tasks,
        "connections": CONNECTIONS,
        "seconds": time.perf_counter() - started,
        "bytes_per_task": data / tasks,
        "retained_bytes_per_task": (data - delta["streams"]) / tasks,  # without the capped feeds
        "stream_bytes_after": after["streams"],
        "keys_per_task": delta["keys"] / tasks,
        "used_memory_bytes_per_task": delta["used_memory"] / tasks,  # clients' buffers included
        "used_memory_before": before["used_memory"],
        "used_memory_after": after["used_memory"],
        "clients_delta_bytes": delta["mem_clients_normal"],
    }
