"""What a task costs in Redis commands (INFO commandstats counts the ones inside Lua scripts too).

The benchmark holds the status layer to a budget per task (issue "cost per task"), so these numbers are
pinned: a change that makes a transition dearer has to say so here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

import pytest
from redis.asyncio import Redis

from shared.store import StatusStore, dump_json
from tests.processes import Proc, start_redis

pytestmark = pytest.mark.anyio

TASKS = 20


@pytest.fixture(scope="module")
def quiet_redis() -> Iterator[Proc]:
    """A server of its own, so no other test's traffic lands in its statistics."""
    proc = start_redis()
    yield proc
    proc.stop()


async def calls_per_task(redis: Redis, step: Callable[[str], Awaitable[object]]) -> dict[str, float]:
    async def stats() -> dict[str, int]:
        info = await redis.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in info.items()}

    await step("warm-up")  # loads the script, registers the task name: once per process, not per task
    before = await stats()
    for i in range(TASKS):
        await step(f"t{i}")
    after = await stats()
    ignored = {"info", "script|load"}  # our probe, and loading the scripts once
    return {
        name: (n - before.get(name, 0)) / TASKS
        for name, n in after.items()
        if name not in ignored and n != before.get(name, 0)
    }


async def test_redis_commands_per_transition(quiet_redis: Proc) -> None:
    redis = Redis.from_url(str(quiet_redis.extra["url"]))
    store = StatusStore(redis, ttl_seconds=600)
    await store.clock.sync(redis)
    started = (dump_json("w:1"), '"2026-01-01T00:00:00Z"', 1)
    # A Celery task: created (record, its index entry, one event), then, short, started and ended in one go.
    create = await calls_per_task(redis, lambda i: store.create("c" + i, "noop", "{}", "celery"))
    short = await calls_per_task(
        redis, lambda i: store.finish("c" + i, "succeeded", owner="", name="noop", started=started)
    )
    # A long in-process task: leased from its creation, claimed, a progress step, heartbeats, its end.
    create_leased = await calls_per_task(redis, lambda i: store.create(i, "noop", "{}", "background", lease="q"))
    claim = await calls_per_task(redis, lambda i: store.claim(i, "w:1"))
    progress = await calls_per_task(redis, lambda i: store.report(i, 1, 0.5, "half"))
    heartbeat = await calls_per_task(redis, lambda i: store.report(i, 1, 0.5, "half"))
    finish = await calls_per_task(redis, lambda i: store.finish(i, "succeeded", owner="", name="noop", attempt=1))
    await redis.aclose()
    assert create == {"evalsha": 1, "set": 1, "zadd": 1, "xadd": 1}
    assert short == {"evalsha": 1, "get": 1, "set": 1, "zrem": 1, "zadd": 1, "xadd": 1}
    assert sum(create.values()) + sum(short.values()) == 10  # the status layer's whole cost of a short task
    assert create_leased == {"evalsha": 1, "set": 1, "zadd": 1 + 1, "xadd": 1}
    assert claim == {"evalsha": 1, "get": 1, "set": 1, "zadd": 1, "xadd": 1}
    assert progress == {"evalsha": 1, "get": 1, "zadd": 1, "set": 1, "xadd": 1}
    assert heartbeat == {"evalsha": 1, "get": 1, "zadd": 1}  # nothing new to tell: no write, no event
    assert finish == {"evalsha": 1, "get": 1, "set": 1, "zrem": 1 + 1, "zadd": 1, "xadd": 1}
