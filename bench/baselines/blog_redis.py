"""Blog-style with its status dict moved to Redis: what a hand-written app pays to let any process follow a task.

    REDIS_URL=redis://127.0.0.1:6379/0 uvicorn bench.baselines.blog_redis:app

The blog app's endpoints and task bodies, with each `tasks[...] = ...` a `SET` of the task's JSON through
redis-py's asyncio client (three per task: queued, running, succeeded; kept as long as ours keeps a record).
Nothing else: no lease, no index, no event, no idempotency. It is the floor of any in-process executor whose
status outlives the process, and the benchmark's reference for what storing a task costs an API process.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from typing import Any

from fastapi import BackgroundTasks, FastAPI, HTTPException, Response
from redis.asyncio import Redis

from bench.baselines.blog import CpuIn, NoopIn, SleepIn
from bench.baselines.work import digest

app = FastAPI(title="blog-style baseline, status in Redis")
redis = Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), max_connections=200)
_KEEP_S = 7 * 24 * 3600  # ours keeps a finished record for RESULT_TTL_SECONDS, 7 days by default


async def _put(task: dict[str, Any]) -> None:
    await redis.set(f"blog:{task['id']}", json.dumps(task), ex=_KEEP_S)


async def _new(name: str) -> dict[str, Any]:
    task = {"id": str(uuid.uuid4()), "name": name, "state": "queued", "result": None, "finished_at": None}
    await _put(task)
    return task


async def _running(task: dict[str, Any]) -> None:
    await _put({**task, "state": "running"})


async def _done(task: dict[str, Any], result: Any) -> None:
    await _put({**task, "state": "succeeded", "result": result, "finished_at": time.time()})


async def run_noop(task: dict[str, Any], value: Any) -> None:
    await _running(task)
    await _done(task, {"value": value})


async def run_sleep(task: dict[str, Any], seconds: float) -> None:
    await _running(task)
    await asyncio.sleep(seconds)
    await _done(task, {"slept": seconds})


async def run_cpu(task: dict[str, Any], rounds: int) -> None:
    """The blog's `def` task runs in a thread; with an asyncio Redis client, the thread does only the work."""
    await _running(task)
    result = await asyncio.to_thread(digest, rounds)
    await _done(task, {"digest": result, "rounds": rounds})


async def run_cpu_async(task: dict[str, Any], rounds: int) -> None:  # on the event loop, as the blog's
    await _running(task)
    await _done(task, {"digest": digest(rounds), "rounds": rounds})


@app.post("/tasks/noop", status_code=202)
async def start_noop(params: NoopIn, background_tasks: BackgroundTasks) -> dict[str, Any]:
    task = await _new("noop")
    background_tasks.add_task(run_noop, task, params.value)
    return task


@app.post("/tasks/sleep", status_code=202)
async def start_sleep(params: SleepIn, background_tasks: BackgroundTasks) -> dict[str, Any]:
    task = await _new("sleep")
    background_tasks.add_task(run_sleep, task, params.seconds)
    return task


@app.post("/tasks/cpu", status_code=202)
async def start_cpu(params: CpuIn, background_tasks: BackgroundTasks) -> dict[str, Any]:
    task = await _new("cpu")
    background_tasks.add_task(run_cpu, task, params.rounds)
    return task


@app.post("/tasks/cpu_async", status_code=202)
async def start_cpu_async(params: CpuIn, background_tasks: BackgroundTasks) -> dict[str, Any]:
    task = await _new("cpu_async")
    background_tasks.add_task(run_cpu_async, task, params.rounds)
    return task


@app.get("/tasks/{task_id}")
async def get_task(task_id: str) -> Response:
    raw = await redis.get(f"blog:{task_id}")
    if raw is None:
        raise HTTPException(404, "not found")
    return Response(raw, media_type="application/json")


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
