"""What the events cost in Redis commands per task (INFO commandstats counts the ones inside Lua scripts too).

The benchmark limits the status layer's commands per task, so these numbers are pinned: a change that makes
events dearer has to say so here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

import pytest
from redis.asyncio import Redis

from shared.store import StatusStore
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

    before = await stats()
    for i in range(TASKS):
        await step(f"t{i}")
    after = await stats()
    ignored = {"info", "script|load", "evalsha"}  # our probe, and the script calls (counted separately below)
    return {
        name: (n - before.get(name, 0)) / TASKS
        for name, n in after.items()
        if name not in ignored and n != before.get(name, 0)
    }


async def test_event_commands_per_task(quiet_redis: Proc) -> None:
    redis = Redis.from_url(str(quiet_redis.extra["url"]))
    store = StatusStore(redis, ttl_seconds=600)
    create = await calls_per_task(redis, lambda i: store.create(i, "noop", "{}", "background"))
    start = await calls_per_task(redis, lambda i: store.start(i, "w:1"))
    progress = await calls_per_task(redis, lambda i: store.progress(i, 1, 0.5, "half"))
    heartbeat = await calls_per_task(redis, lambda i: store.progress(i, 1, 0.5, "half"))
    finish = await calls_per_task(
        redis, lambda i: store.finish(i, "succeeded", attempt=1, result_json="1", progress=1.0)
    )
    await redis.aclose()
    # The core's own commands (with the lease: a ZADD to renew, a ZREM at the end), then what events add:
    # 2 XADD per change, the snapshot's HGETALL, the history's HSET on a state change after the first, and the
    # task stream's EXPIRE at the end. An in-process task is leased from its creation (the second ZADD).
    assert create == {"hset": 1, "zadd": 1 + 1, "hgetall": 1, "xadd": 2}
    assert start == {"hmget": 1, "hset": 1 + 1, "zadd": 1, "hgetall": 1, "xadd": 2}
    assert progress == {"hmget": 1, "hset": 1, "zadd": 1, "hgetall": 1, "xadd": 2}
    assert heartbeat == {"hmget": 1, "hset": 1, "zadd": 1}  # nothing new to tell: no event
    assert finish == {"hmget": 1, "hset": 1 + 1, "expire": 1 + 1, "zrem": 1, "hgetall": 1, "xadd": 2}
