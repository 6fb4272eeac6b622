"""The sweeper settles each expired lease once, however many processes sweep at the same moment."""

from __future__ import annotations

import asyncio
import json

import pytest

from shared.store import WORKER_LOST, Requeue, StatusStore
from shared.sweeper import Sweeper

pytestmark = pytest.mark.anyio


async def test_many_sweepers_requeue_each_dead_celery_task_exactly_once(store: StatusStore) -> None:
    dead = StatusStore(store.redis, ttl_seconds=600, lease_seconds=-1)  # leases already over
    for i in range(10):
        await store.create(f"c{i}", "sleep", "{}", "celery", max_attempts=2)
        await dead.start(f"c{i}", "w:1")
    sent: list[Requeue] = []

    async def requeue(job: Requeue) -> None:
        sent.append(job)

    sweepers = [Sweeper(store, requeue, interval=1) for _ in range(5)]
    await asyncio.gather(*(sweeper.sweep_once() for sweeper in sweepers))
    assert sorted(job.task_id for job in sent) == sorted(f"c{i}" for i in range(10))
    for i in range(10):
        rec = json.loads(await store.get_json(f"c{i}") or b"{}")
        assert (rec["state"], rec["error"]) == ("queued", WORKER_LOST)
    assert await store.expired_leases() == []  # the sent messages now keep them, not a lease


async def test_a_sweeper_without_celery_leaves_celery_tasks_and_ends_in_process_ones(store: StatusStore) -> None:
    dead = StatusStore(store.redis, ttl_seconds=600, lease_seconds=-1)
    await store.create("cel", "sleep", "{}", "celery", max_attempts=2)
    await dead.start("cel", "w:1")
    await dead.create("bg", "sleep", "{}", "background")
    settled = await Sweeper(store, None, interval=1).sweep_once()
    assert settled == [("bg", "lost")]
    assert json.loads(await store.get_json("cel") or b"{}")["state"] == "running"  # left for a worker


async def test_a_sweep_that_fails_to_send_leaves_the_lease_for_the_next_sweep(store: StatusStore) -> None:
    dead = StatusStore(store.redis, ttl_seconds=600, lease_seconds=-1)
    await store.create("c", "sleep", "{}", "celery", max_attempts=3)
    await dead.start("c", "w:1")

    async def broker_down(job: Requeue) -> None:
        raise ConnectionError("broker unreachable")

    with pytest.raises(ConnectionError):
        await Sweeper(dead, broker_down, interval=1).sweep_once()
    assert await store.expired_leases() == ["c"]  # re-queued in the store, but no message: still leased
    sent: list[Requeue] = []

    async def requeue(job: Requeue) -> None:
        sent.append(job)

    await Sweeper(dead, requeue, interval=1).sweep_once()
    assert [job.task_id for job in sent] == ["c"]
