"""Request rates: `GET /tasks/{id}` against an async hello endpoint, and each system's `POST` rate."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import psutil
import redis

from bench.loadgen import hammer, request_bytes
from bench.systems import Running


async def wait_done(system: Running, task_id: str, limit_s: float = 120) -> None:
    """Poll one task until it ended (used to let a backlog drain before the next measurement)."""
    deadline = time.monotonic() + limit_s
    async with httpx.AsyncClient(base_url=system.url, timeout=30) as client:
        while time.monotonic() < deadline:
            resp = await client.get(f"/tasks/{task_id}")
            if resp.status_code == 200 and system.spec.parse(resp.json()).done:
                return
            await asyncio.sleep(0.05)
    raise TimeoutError(f"{system.spec.name}: task {task_id} did not finish within {limit_s} s")


async def finished_task(system: Running, name: str = "noop", params: dict[str, Any] | None = None) -> str:
    """Run one task end to end (a system is ready when it has; a `cpu` one also reaches a hybrid's worker)."""
    async with httpx.AsyncClient(base_url=system.url, timeout=30) as client:
        resp = await client.post(f"/tasks/{name}", json={"value": "rate"} if params is None else params)
        resp.raise_for_status()
        task_id: str = resp.json()[system.spec.id_field]
    await wait_done(system, task_id)
    return task_id


def _redis_cpu(system: Running) -> float | None:
    """The Redis server's CPU seconds so far (`INFO cpu`), or None without Redis."""
    if not system.redis_url:
        return None
    with redis.Redis.from_url(system.redis_url) as client:
        info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _worker_cpu(system: Running) -> float | None:
    if system.worker is None:
        return None
    total = 0.0
    for proc in system.worker.tree():
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            continue
    return total


def _per(before: float | None, after: float | None, tasks: int) -> float | None:
    if before is None or after is None or not tasks:
        return None
    return (after - before) / tasks * 1e6


async def measure(system: Running, *, gets: int, posts: int, connections: int, hello: bool) -> dict[str, Any]:
    """Warm each request kind up, then time `gets` GETs and `posts` POSTs (waiting for the tasks to finish)."""
    task_id = await finished_task(system)
    out: dict[str, Any] = {}
    kinds = [("get_task", request_bytes("GET", f"{system.url}/tasks/{task_id}"), gets)]
    if hello:
        kinds.append(("hello", request_bytes("GET", f"{system.url}/hello"), gets))
    api = psutil.Process(system.api.pid)

    def cpu() -> float:
        times = api.cpu_times()
        return float(times.user + times.system)

    for kind, request, total in kinds:
        await hammer(system.url, request, max(50, total // 10), connections)  # warm-up, discarded
        before = cpu()
        result = await hammer(system.url, request, total, connections)
        out[kind] = {
            "requests": result.requests,
            "ok": result.ok,
            "seconds": result.seconds,
            "rate_per_s": result.rate,
            "api_cpu_us_per_request": (cpu() - before) / result.requests * 1e6,
        }
    post = request_bytes("POST", f"{system.url}/tasks/noop", b'{"value":1}')
    redis_before, worker_before = _redis_cpu(system), _worker_cpu(system)
    started, before = time.perf_counter(), cpu()
    result = await hammer(system.url, post, posts, connections)
    post_cpu = cpu() - before
    for body in result.last_bodies:  # the last task of each connection: the backlog has drained after these
        await wait_done(system, json.loads(body)[system.spec.id_field])
    drained = time.perf_counter() - started
    redis_after, worker_after = _redis_cpu(system), _worker_cpu(system)
    out["post"] = {
        "requests": result.requests,
        "ok": result.ok,
        "seconds": result.seconds,
        "rate_per_s": result.rate,
        "api_cpu_us_per_request": post_cpu / result.requests * 1e6,  # incl. running the no-op in-process
        "drain_s": drained,  # until the last of these tasks had run: an end-to-end rate under saturation
        "completed_per_s": result.ok / drained if drained else None,
        # What each task cost the Redis server and the Celery workers, for the at-scale arithmetic (the
        # server is shared by every system, the others idle meanwhile; the reads of the drain are included).
        "redis_cpu_us_per_task": _per(redis_before, redis_after, result.ok),
        "worker_cpu_us_per_task": _per(worker_before, worker_after, result.ok),
    }
    await asyncio.sleep(0.2)
    return out
