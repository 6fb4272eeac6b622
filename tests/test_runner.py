"""The shared runner's state machine, which both executors rely on, on fakeredis and real Redis."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace
from typing import Any

import pytest
from pydantic import BaseModel

from shared.record import TaskRecord
from shared.runner import SHUTDOWN_LOST, Runner, backoff
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

    @tasks.task(max_attempts=3, retry_backoff=0.01)
    async def flaky(params: Args, ctx: TaskContext) -> int:
        """Fails until attempt n."""
        if ctx.attempt < params.n:
            raise ConnectionError(f"attempt {ctx.attempt} failed")
        return ctx.attempt

    @tasks.task(time_limit=0.2)
    async def overruns(params: Args, ctx: TaskContext) -> None:
        await asyncio.sleep(60)

    @tasks.task(time_limit=0.2)
    def overruns_in_a_thread(params: Args, ctx: TaskContext) -> None:
        while not ctx.cancelled:
            time.sleep(0.01)

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
    assert done.message == "held"  # the task's last word, even if it came after the last progress write


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


async def test_a_failing_attempt_is_retried_until_it_succeeds(runner: Runner) -> None:
    rec = await run(runner, "flaky", '{"n": 3}')
    assert (rec.state, rec.result, rec.attempts, rec.error) == ("succeeded", 3, 3, None)
    assert [(e.attempt, e.error) for e in rec.attempt_errors] == [
        (1, "ConnectionError: attempt 1 failed"),
        (2, "ConnectionError: attempt 2 failed"),
    ]


async def test_a_task_out_of_attempts_fails_with_every_attempt_error(runner: Runner) -> None:
    rec = await run(runner, "flaky", '{"n": 9}')
    assert (rec.state, rec.attempts, rec.error) == ("failed", 3, "ConnectionError: attempt 3 failed")
    assert [e.attempt for e in rec.attempt_errors] == [1, 2, 3]


@pytest.mark.parametrize("name", ["overruns", "overruns_in_a_thread"])
async def test_an_attempt_over_its_time_limit_fails(runner: Runner, name: str) -> None:
    rec = await run(runner, name)
    assert rec.state == "failed"
    assert rec.error == "TimeLimitExceeded: attempt 1 ran longer than 0.2 s"


async def test_the_settings_time_limit_caps_every_task(store: StatusStore, release: threading.Event) -> None:
    capped = Runner(
        store, make_registry(release), worker="t:1", progress_interval=0.02, heartbeat_interval=0.05, time_limit=0.1
    )
    rec = await run(capped, "waits_forever")
    assert rec.error == "TimeLimitExceeded: attempt 1 ran longer than 0.1 s"


async def test_a_run_cut_short_by_shutdown_is_marked_lost(runner: Runner) -> None:
    await runner.store.create("t", "waits_forever", "{}", "background")
    running = asyncio.ensure_future(runner.run("t", "waits_forever", "{}"))
    await wait_for(runner.store, "t", lambda r: r.state == "running")
    assert runner.running == {"t"}
    running.cancel()  # what uvicorn does to unfinished background tasks after its graceful timeout
    await runner.drain(5)
    assert running.cancelled()
    assert runner.running == set()
    rec = await runner.store.get("t")
    assert rec is not None
    assert (rec.state, rec.error) == ("lost", SHUTDOWN_LOST)


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    spec = make_registry(threading.Event()).get("flaky")
    for attempt, ceiling in [(1, 0.01), (2, 0.02), (3, 0.04)]:
        delays = {backoff(spec, attempt) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered
    capped = replace(spec, retry_backoff=10, retry_backoff_max=15)
    assert all(7.5 <= backoff(capped, 5) <= 15 for _ in range(50))
