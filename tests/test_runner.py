"""The shared runner's state machine, which both executors rely on, on fakeredis and real Redis."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from pydantic import BaseModel

from shared.connection import clone_client, make_keeper
from shared.record import TaskRecord
from shared.runner import SHUTDOWN_LOST, Runner, backoff
from shared.store import StatusStore
from shared.sweeper import Sweeper
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

    @tasks.task()
    async def hogs_its_loop(params: Args, ctx: TaskContext) -> str:
        """CPU work written as `async def`: it never yields for `n` tenths of a second."""
        ctx.progress(0.5, "hogging")
        time.sleep(params.n / 10)  # noqa: ASYNC251 - blocking the loop is the point
        return "done"

    @tasks.task()
    async def huge(params: Args) -> str:
        return "x" * 2_000

    return tasks


@pytest.fixture
def release() -> threading.Event:
    return threading.Event()


def make_runner(store: StatusStore, release: threading.Event, **options: Any) -> Runner:
    keeper = make_keeper(store, worker="test:1", interval=0.02, heartbeat_interval=0.05)
    return Runner(store, make_registry(release), worker="test:1", keeper=keeper, **options)


@pytest.fixture(params=["always", "never"])
def runner(request: pytest.FixtureRequest, store: StatusStore, release: threading.Event) -> Iterator[Runner]:
    """Both ways of starting: optimistic (the start written with the end when short) and claimed first."""
    made = make_runner(store, release, optimistic=request.param)
    yield made
    release.set()
    made.keeper.stop()


async def run(runner: Runner, name: str, params: str = '{"n": 21}') -> TaskRecord:
    task_id = f"id-{name}"
    attempts = runner.registry.get(name).max_attempts if name in runner.registry else 1
    await runner.store.create(task_id, name, params, "background", lease="q", max_attempts=attempts)
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


async def test_a_task_that_is_not_queued_is_not_run_or_is_stopped_at_once(runner: Runner) -> None:
    await runner.store.create("t", "waits_for_release", "{}", "background")
    await runner.store.cancel("t")
    # Claimed first, it never runs; optimistic, its start is refused within a progress interval and the
    # runner stops waiting for it (a thread cannot be killed; its result would be void).
    assert await asyncio.wait_for(runner.run("t", "waits_for_release", "{}"), timeout=5) is None
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
    capped = make_runner(store, release, time_limit=0.1)
    try:
        rec = await run(capped, "waits_forever")
    finally:
        capped.keeper.stop()
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


async def test_a_result_over_the_size_limit_fails_the_task(store: StatusStore, release: threading.Event) -> None:
    limited = make_runner(store, release, max_result_bytes=1_000)
    try:
        rec = await run(limited, "huge")
    finally:
        limited.keeper.stop()
    assert rec.state == "failed"
    assert rec.error is not None
    assert rec.error.startswith("ResultTooLarge: 2002 bytes of JSON")


async def test_a_short_task_writes_its_start_and_end_together(store: StatusStore, release: threading.Event) -> None:
    optimistic = make_runner(store, release, optimistic="always")
    try:
        rec = await run(optimistic, "double")
    finally:
        optimistic.keeper.stop()
    assert (rec.state, rec.attempts, rec.worker) == ("succeeded", 1, "test:1")
    assert [h.state for h in rec.history or []] == ["queued", "running", "succeeded"]
    assert await store.redis.zcard(store.keys.leases(0)) == 0  # nothing left leased


async def test_a_task_that_blocks_its_event_loop_is_not_taken_for_dead(
    store: StatusStore, release: threading.Event
) -> None:
    """Its heartbeats come from the keeper's thread, so a sweeper never sees its lease run out."""
    short = StatusStore(store.redis, ttl_seconds=600, lease_seconds=0.3)
    hog = make_runner(short, release)
    sweeps: list[list[tuple[str, str]]] = []
    stop = threading.Event()

    def sweep_meanwhile() -> None:
        async def loop() -> None:
            other = StatusStore(clone_client(store.redis), ttl_seconds=600, lease_seconds=0.3)
            sweeper = Sweeper(other, None, interval=0.05, grace=0)
            while not stop.is_set():
                sweeps.append(await sweeper.sweep_once())
                await asyncio.sleep(0.05)
            await other.redis.aclose()

        asyncio.run(loop())

    sweeping = threading.Thread(target=sweep_meanwhile)
    sweeping.start()
    try:
        rec = await run(hog, "hogs_its_loop", '{"n": 12}')  # blocks its loop for 1.2 s: four leases
    finally:
        stop.set()
        sweeping.join(5)
        hog.keeper.stop()
    assert (rec.state, rec.result, rec.attempts) == ("succeeded", "done", 1)
    assert len(sweeps) > 5
    assert all(settled == [] for settled in sweeps)
