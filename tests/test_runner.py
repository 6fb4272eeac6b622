"""The shared runner's state machine, which both executors rely on, on fakeredis and real Redis."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from pydantic import BaseModel

from shared.record import TaskRecord
from shared.runner import Runner
from shared.store import StatusStore
from shared.tasks import TaskCancelled, TaskContext, TaskRegistry

pytestmark = pytest.mark.anyio


class Args(BaseModel):
    n: int = 0


def make_registry(release: threading.Event) -> TaskRegistry:
    tasks = TaskRegistry()

    @tasks.task()
    async def double(params: Args) -> dict[str, int]:
        return {"n": params.n * 2}

    @tasks.task()
    def blocking_double(params: Args, ctx: TaskContext) -> int:
        ctx.progress(0.5)
        return params.n * 2

    @tasks.task()
    async def broken(params: Args) -> None:
        raise ValueError(f"bad n {params.n}")

    @tasks.task()
    async def unserialisable(params: Args) -> object:
        return object()

    @tasks.task()
    async def waits_forever(params: Args, ctx: TaskContext) -> None:
        ctx.progress(0.3, "waiting")
        await asyncio.Event().wait()

    @tasks.task()
    def spins_until_cancelled(params: Args, ctx: TaskContext) -> None:
        ctx.progress(0.1, "spinning")
        while True:
            ctx.raise_if_cancelled()
            time.sleep(0.01)

    @tasks.task()
    def waits_for_release(params: Args, ctx: TaskContext) -> str:
        ctx.progress(0.7, "held")
        release.wait(10)
        return "released"

    @tasks.task()
    async def gives_up(params: Args, ctx: TaskContext) -> None:
        raise TaskCancelled("stopping on my own")

    return tasks


@pytest.fixture
def release() -> threading.Event:
    return threading.Event()


@pytest.fixture
def runner(store: StatusStore, release: threading.Event) -> Runner:
    return Runner(store, make_registry(release), worker="test:1", progress_interval=0.02, heartbeat_interval=0.05)


async def run(runner: Runner, name: str, params: str = '{"n": 21}') -> TaskRecord:
    task_id = f"id-{name}"
    await runner.store.create(task_id, name, params, "background")
    await asyncio.wait_for(runner.run(task_id, name, params), timeout=10)
    rec = await runner.store.get(task_id)
    assert rec is not None
    return rec


async def wait_for(store: StatusStore, task_id: str, check: Any) -> TaskRecord:
    async with asyncio.timeout(5):
        while True:
            rec = await store.get(task_id)
            if rec is not None and check(rec):
                return rec
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("name", ["double", "blocking_double"])
async def test_async_and_sync_tasks_succeed_with_their_result(runner: Runner, name: str) -> None:
    rec = await run(runner, name)
    assert rec.state == "succeeded"
    assert rec.result == ({"n": 42} if name == "double" else 42)
    assert rec.progress == 1.0
    assert rec.attempts == 1
    assert rec.error is None
    assert rec.started_at is not None
    assert rec.finished_at is not None
    assert rec.created_at <= rec.started_at <= rec.finished_at


async def test_an_exception_fails_the_task_with_its_type_and_message(runner: Runner) -> None:
    rec = await run(runner, "broken")
    assert rec.state == "failed"
    assert rec.error == "ValueError: bad n 21"
    assert rec.result is None


async def test_a_result_that_is_not_json_fails_the_task(runner: Runner) -> None:
    rec = await run(runner, "unserialisable")
    assert rec.state == "failed"
    assert rec.error is not None
    assert rec.error.startswith("TypeError: result is not JSON")


async def test_an_unknown_task_name_fails_instead_of_staying_queued(runner: Runner) -> None:
    rec = await run(runner, "not_registered_here")
    assert rec.state == "failed"
    assert rec.error == "UnknownTask: no task 'not_registered_here' is registered here"


async def test_a_task_that_is_not_queued_is_not_run(runner: Runner, release: threading.Event) -> None:
    await runner.store.create("t", "waits_for_release", "{}", "background")
    await runner.store.cancel("t")
    await asyncio.wait_for(runner.run("t", "waits_for_release", "{}"), timeout=5)
    rec = await runner.store.get("t")
    assert rec is not None
    assert (rec.state, rec.attempts, rec.progress) == ("cancelled", 0, 0.0)


async def test_progress_reaches_the_store_while_the_task_runs(runner: Runner, release: threading.Event) -> None:
    await runner.store.create("t", "waits_for_release", "{}", "background")
    running = asyncio.ensure_future(runner.run("t", "waits_for_release", "{}"))
    seen = await wait_for(runner.store, "t", lambda r: r.progress == 0.7)
    assert (seen.state, seen.message) == ("running", "held")
    release.set()
    await asyncio.wait_for(running, timeout=5)
    done = await runner.store.get("t")
    assert done is not None
    assert (done.state, done.result, done.progress) == ("succeeded", "released", 1.0)


@pytest.mark.parametrize("name", ["waits_forever", "spins_until_cancelled"])
async def test_a_running_task_stops_when_cancelled(runner: Runner, name: str) -> None:
    await runner.store.create("t", name, "{}", "background")
    running = asyncio.ensure_future(runner.run("t", name, "{}"))
    await wait_for(runner.store, "t", lambda r: r.state == "running" and r.progress > 0)
    await runner.store.cancel("t")
    await asyncio.wait_for(running, timeout=5)
    rec = await runner.store.get("t")
    assert rec is not None
    assert rec.state == "cancelled"
    assert rec.error is None
    assert rec.finished_at is not None


async def test_a_task_may_stop_itself_with_task_cancelled(runner: Runner) -> None:
    rec = await run(runner, "gives_up")
    assert rec.state == "cancelled"
