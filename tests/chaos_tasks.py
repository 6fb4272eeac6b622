"""Tasks that only the tests register (TASK_MODULES=shared.builtin_tasks,tests.chaos_tasks)."""

from __future__ import annotations

import asyncio
import time

from pydantic import BaseModel, Field

from shared.builtin_tasks import SleepParams
from shared.builtin_tasks import sleep as builtin_sleep
from shared.tasks import TaskContext, task


class FlakyParams(BaseModel):
    succeed_on: int = Field(ge=1, le=10)


class Nothing(BaseModel):
    pass


@task("flaky", max_attempts=3, retry_backoff=0.05)
async def flaky(params: FlakyParams, ctx: TaskContext) -> dict[str, int]:
    """Fails until attempt `succeed_on`."""
    if ctx.attempt < params.succeed_on:
        raise ConnectionError(f"attempt {ctx.attempt} failed")
    return {"attempt": ctx.attempt}


@task("overrun", time_limit=0.5)
async def overrun(params: Nothing) -> None:
    await asyncio.sleep(600)


@task("overrun_sync", time_limit=0.5)
def overrun_sync(params: Nothing, ctx: TaskContext) -> None:
    while not ctx.cancelled:
        time.sleep(0.01)


@task("sleep_once")
async def sleep_once(params: SleepParams, ctx: TaskContext) -> dict[str, float]:
    """Like `sleep`, but never re-run: a worker crash makes it `lost`."""
    return await builtin_sleep(params, ctx)


class Counted(BaseModel):
    seconds: float = Field(ge=0, le=60)


def _count_run(task_id: str) -> None:
    """Count a start of the body in the Redis at COUNT_URL (a database of its own): double runs show."""
    import os

    import redis

    with redis.Redis.from_url(os.environ["COUNT_URL"]) as counter:
        counter.incr(f"runs:{task_id}")


@task("counted_once")
async def counted_once(params: Counted, ctx: TaskContext) -> dict[str, float]:
    """At most once: claimed before it runs; its body counts each start."""
    _count_run(ctx.task_id)
    await asyncio.sleep(params.seconds)
    return {"slept": params.seconds}


@task("counted", max_attempts=3, retry_backoff=0.05)
async def counted(params: Counted, ctx: TaskContext) -> dict[str, float]:
    """Safe to run again (three attempts): started optimistically; its body counts each start."""
    _count_run(ctx.task_id)
    await asyncio.sleep(params.seconds)
    return {"slept": params.seconds}


@task("hogs_the_loop", max_attempts=3)
async def hogs_the_loop(params: Counted, ctx: TaskContext) -> str:
    """CPU-bound work written as `async def`: it blocks its event loop for `seconds`."""
    _count_run(ctx.task_id)
    time.sleep(params.seconds)  # noqa: ASYNC251 - blocking the loop is the point
    return "done"
