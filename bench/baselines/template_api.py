"""Template-style, the API side: POST calls `.delay()`, GET reads `AsyncResult` from the result backend.

    uvicorn bench.baselines.template_api:app

Celery tasks are synchronous, so `cpu_async` is the same `cpu` task here.
"""

from __future__ import annotations

from typing import Any

from celery import states
from celery.result import AsyncResult
from fastapi import FastAPI
from pydantic import BaseModel, Field, JsonValue

from bench.baselines.template_worker import celery, cpu, noop, sleep

app = FastAPI(title="template-style baseline")


class NoopIn(BaseModel):
    value: JsonValue = None


class SleepIn(BaseModel):
    seconds: float = Field(ge=0, le=3600)


class CpuIn(BaseModel):
    rounds: int = Field(ge=1, le=100_000_000)


@app.post("/tasks/noop", status_code=202)
def start_noop(params: NoopIn) -> dict[str, str]:
    return {"task_id": noop.delay(params.value).id}


@app.post("/tasks/sleep", status_code=202)
def start_sleep(params: SleepIn) -> dict[str, str]:
    return {"task_id": sleep.delay(params.seconds).id}


@app.post("/tasks/cpu", status_code=202)
@app.post("/tasks/cpu_async", status_code=202)
def start_cpu(params: CpuIn) -> dict[str, str]:
    return {"task_id": cpu.delay(params.rounds).id}


@app.get("/tasks/{task_id}")
def get_status(task_id: str) -> dict[str, Any]:
    result: AsyncResult[Any] = AsyncResult(task_id, app=celery)
    body: dict[str, Any] = {"task_id": task_id, "task_status": result.status, "task_result": result.result}
    body["date_done"] = None
    if body["task_status"] in states.READY_STATES:  # the meta is cached once ready: no further read
        done = result.date_done
        body["date_done"] = done.isoformat() if done else None
    return body


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
