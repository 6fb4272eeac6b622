"""Blog-style: FastAPI `BackgroundTasks` with the status kept in an in-process dict.

    uvicorn bench.baselines.blog:app

`GET /hello` is the async hello endpoint the benchmark compares `GET /tasks/{id}` against.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from fastapi import BackgroundTasks, FastAPI, HTTPException
from pydantic import BaseModel, Field, JsonValue

from bench.baselines.work import digest

app = FastAPI(title="blog-style baseline")
tasks: dict[str, dict[str, Any]] = {}


class NoopIn(BaseModel):
    value: JsonValue = None


class SleepIn(BaseModel):
    seconds: float = Field(ge=0, le=3600)


class CpuIn(BaseModel):
    rounds: int = Field(ge=1, le=100_000_000)


def _new(name: str) -> dict[str, Any]:
    task_id = str(uuid.uuid4())
    tasks[task_id] = {"id": task_id, "name": name, "state": "queued", "result": None, "finished_at": None}
    return tasks[task_id]


def _done(task_id: str, result: Any) -> None:
    tasks[task_id].update(state="succeeded", result=result, finished_at=time.time())


async def run_noop(task_id: str, value: Any) -> None:
    tasks[task_id]["state"] = "running"
    _done(task_id, {"value": value})


async def run_sleep(task_id: str, seconds: float) -> None:
    tasks[task_id]["state"] = "running"
    await asyncio.sleep(seconds)
    _done(task_id, {"slept": seconds})


def run_cpu(task_id: str, rounds: int) -> None:  # `def`: Starlette runs it in the thread pool
    tasks[task_id]["state"] = "running"
    _done(task_id, {"digest": digest(rounds), "rounds": rounds})


async def run_cpu_async(task_id: str, rounds: int) -> None:  # `async def`: runs on the event loop
    tasks[task_id]["state"] = "running"
    _done(task_id, {"digest": digest(rounds), "rounds": rounds})


@app.post("/tasks/noop", status_code=202)
async def start_noop(params: NoopIn, background_tasks: BackgroundTasks) -> dict[str, Any]:
    task = _new("noop")
    background_tasks.add_task(run_noop, task["id"], params.value)
    return task


@app.post("/tasks/sleep", status_code=202)
async def start_sleep(params: SleepIn, background_tasks: BackgroundTasks) -> dict[str, Any]:
    task = _new("sleep")
    background_tasks.add_task(run_sleep, task["id"], params.seconds)
    return task


@app.post("/tasks/cpu", status_code=202)
async def start_cpu(params: CpuIn, background_tasks: BackgroundTasks) -> dict[str, Any]:
    task = _new("cpu")
    background_tasks.add_task(run_cpu, task["id"], params.rounds)
    return task


@app.post("/tasks/cpu_async", status_code=202)
async def start_cpu_async(params: CpuIn, background_tasks: BackgroundTasks) -> dict[str, Any]:
    task = _new("cpu_async")
    background_tasks.add_task(run_cpu_async, task["id"], params.rounds)
    return task


@app.get("/tasks/{task_id}")
async def get_task(task_id: str) -> dict[str, Any]:
    if task_id not in tasks:
        raise HTTPException(404, "not found")
    return tasks[task_id]


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"message": "hello"}
