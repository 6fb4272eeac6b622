"""The sweeper settles each expired lease once, however many processes sweep at the same moment, and tidies."""

from __future__ import annotations

import asyncio
import json

import pytest

from shared.keys import ACTIVE
from shared.store import WORKER_LOST, Requeue, StatusStore
from shared.sweeper import Sweeper

pytestmark = pytest.mark.anyio


def dead(store: StatusStore) -> StatusStore:
    """The same Redis seen by a store whose leases are already over when taken."""
    return StatusStore(store.redis, ttl_seconds=600, lease_seconds=-1)


async def test_many_sweepers_requeue_each_dead_celery_task_exactly_once(store: StatusStore) -> None:
    for i in range(10):
        await store.create(f"c{i}", "sleep", "{}", "celery", max_attempts=2)
        await dead(store).claim(f"c{i}", "w:1")
    sent: list[Requeue] = []

    async def requeue(job: Requeue) -> None:
        sent.append(job)

    sweepers = [Sweeper(store, requeue, interval=1, grace=0) for _ in range(5)]
    await asyncio.gather(*(sweeper.sweep_once() for sweeper in sweepers))
    assert sorted(job.task_id for job in sent) == sorted(f"c{i}" for i in range(10))
    for i in range(10):
        rec = json.loads(await store.get_json(f"c{i}") or b"{}")
        assert (rec["state"], rec["error"]) == ("queued", WORKER_LOST)
    assert await store.expired_leases() == []  # the sent messages now keep them, not a lease


async def test_a_sweeper_without_celery_leaves_celery_tasks_and_ends_in_process_ones(store: StatusStore) -> None:
    await store.create("cel", "sleep", "{}", "celery", max_attempts=2)
    await dead(store).claim("cel", "w:1")
    await dead(store).create("bg", "sleep", "{}", "background", lease="q")
    settled = await Sweeper(store, None, interval=1, grace=0).sweep_once()
    assert settled == [("bg", "lost")]
    assert json.loads(await store.get_json("cel") or b"{}")["state"] == "running"  # left for a worker


async def test_a_sweep_that_fails_to_send_leaves_the_lease_for_the_next_sweep(store: StatusStore) -> None:
    await store.create("c", "sleep", "{}", "celery", max_attempts=3)
    await dead(store).claim("c", "w:1")

    async def broker_down(job: Requeue) -> None:
        raise ConnectionError("broker unreachable")

    with pytest.raises(ConnectionError):
        await Sweeper(dead(store), broker_down, interval=1, grace=0).sweep_once()
    # Re-queued in the store, but no message: still leased, so the sweep after its lease sends it.
    assert await store.redis.zscore(store.keys.leases(0), "c") is not None
    assert json.loads(await store.get_json("c") or b"{}")["state"] == "queued"
    sent: list[Requeue] = []

    async def requeue(job: Requeue) -> None:
        sent.append(job)

    await Sweeper(dead(store), requeue, interval=1, grace=0).sweep_once()
    assert [job.task_id for job in sent] == ["c"]
    assert await store.redis.zscore(store.keys.leases(0), "c") is None  # sent: released


async def test_a_sweeper_waits_a_whole_lease_of_good_health_before_it_acts(store: StatusStore) -> None:
    await dead(store).create("bg", "sleep", "{}", "background", lease="q")
    patient = Sweeper(StatusStore(store.redis, ttl_seconds=600, lease_seconds=0.5), None, interval=0.1)
    await patient.tick()  # just started (or just back from an outage): living processes renew first
    assert json.loads(await store.get_json("bg") or b"{}")["state"] == "queued"
    await asyncio.sleep(0.6)
    await patient.tick()
    assert json.loads(await store.get_json("bg") or b"{}")["state"] == "lost"


async def test_pruning_empties_the_store_once_every_record_expired(store: StatusStore) -> None:
    short = StatusStore(store.redis, ttl_seconds=1, register_every=0.2)
    for i in range(5):
        await short.create(f"t{i}", "noop", "{}", "background", lease="q")
        await short.claim(f"t{i}", "w:1")
        await short.finish(f"t{i}", "succeeded", owner="", name="noop", attempt=1)
    await short.create("c", "noop", "{}", "celery")
    await short.cancel("c")
    assert await store.redis.dbsize() > 0
    sweeper = Sweeper(short, None, interval=0.1, events_age=1, grace=0)
    await asyncio.sleep(1.5)  # every record expired (Redis's own TTL)
    await sweeper.prune()
    assert await store.redis.keys() == [short.keys.prune_lock(0).encode()]  # held for a prune interval
    await asyncio.sleep(1.1)
    assert await store.redis.dbsize() == 0


async def test_pruning_keeps_what_is_still_alive(store: StatusStore) -> None:
    short = StatusStore(store.redis, ttl_seconds=1, register_every=0.2)
    await short.create("live", "sleep", "{}", "background", lease="q")
    await short.claim("live", "w:1")
    await short.create("done", "noop", "{}", "background")
    await short.finish("done", "succeeded", owner="", name="noop", started=('"w"', '"2026-01-01T00:00:00Z"', 1))
    await asyncio.sleep(1.5)
    await Sweeper(short, None, interval=0.1, events_age=3600, grace=0).prune()
    assert await short.read("live") is not None
    assert await store.redis.zscore(short.keys.index(0, "", "sleep", ACTIVE), "live") is not None
    assert await store.redis.zcard(short.keys.index(0, "", "noop", "succeeded")) == 0
    assert await store.redis.zrange(short.keys.names(0, ""), 0, -1) == [b"sleep"]


async def test_a_celery_task_queued_too_long_has_its_message_sent_again(store: StatusStore) -> None:
    await store.create("lost-message", "noop", "{}", "celery", owner="o")  # the broker lost its message
    await store.create("fresh", "noop", "{}", "celery", owner="o")
    sent: list[Requeue] = []

    async def requeue(job: Requeue) -> None:
        sent.append(job)

    sweeper = Sweeper(store, requeue, interval=0.1, grace=0, resend_after=0.5)
    await asyncio.sleep(0.6)
    await store.create("newer", "noop", "{}", "celery", owner="o")
    await sweeper.prune()
    await sweeper.sweep_once()
    assert sorted(job.task_id for job in sent) == ["fresh", "lost-message"]  # "newer" is not old enough
    assert all(job.owner == "o" for job in sent)
    sent.clear()
    await asyncio.sleep(1.1)  # the prune lock runs out
    await sweeper.prune()  # sent again only once it has waited as long again
    await sweeper.sweep_once()
    assert sorted(job.task_id for job in sent) == ["fresh", "lost-message", "newer"]
