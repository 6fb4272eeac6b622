"""The per-process event hub: one reader wakes waiters of a task and feeds subscribers of every task."""

from __future__ import annotations

import pytest

from api.hub import EventHub
from shared.feed import TaskEvent
from shared.store import StatusStore

pytestmark = pytest.mark.anyio


async def test_a_waiter_is_woken_by_a_change_of_its_task_only(store: StatusStore) -> None:
    hub = EventHub(store.redis)
    await store.create("mine", "sleep", "{}", "background")
    await store.create("other", "sleep", "{}", "background")
    try:
        async with hub.task_changes("mine") as mine:
            await store.start("other", "w:1")
            await store.start("mine", "w:1")
            assert await mine.wait(10) is True
            assert await mine.wait(0.2) is False  # one change, one wake (the other task's did not count)
    finally:
        await hub.close()


async def test_a_subscriber_gets_every_event_in_order_and_metrics_see_them(store: StatusStore) -> None:
    seen: list[TaskEvent] = []
    hub = EventHub(store.redis, on_event=seen.append)
    try:
        async with hub.all_changes() as feed:
            await store.create("a", "noop", "{}", "celery")
            await store.create("b", "noop", "{}", "celery")
            await store.start("a", "w:1")
            got = [await feed.next(10) for _ in range(3)]
        assert [(e.snapshot.task_id, e.snapshot.state) for e in got if e] == [
            ("a", "queued"),
            ("b", "queued"),
            ("a", "running"),
        ]
        assert [e.id for e in seen] == [e.id for e in got if e]
    finally:
        await hub.close()


async def test_the_hub_follows_from_its_start(store: StatusStore) -> None:
    await store.create("before", "noop", "{}", "background")
    hub = EventHub(store.redis)
    try:
        await hub.start()
        async with hub.all_changes() as feed:
            await store.create("after", "noop", "{}", "background")
            first = await feed.next(10)
        assert first is not None
        assert (first.snapshot.task_id, first.snapshot.state) == ("after", "queued")  # "before" was not replayed
    finally:
        await hub.close()


async def test_a_subscriber_that_falls_behind_is_told_to_resume(store: StatusStore) -> None:
    hub = EventHub(store.redis)
    try:
        async with hub.all_changes(size=2) as feed:
            for i in range(4):
                await store.create(f"t{i}", "noop", "{}", "background")
            assert await feed.next(10) is None  # the end marker, in place of what it could not hold
            assert feed.overflowed  # the stream closes there; the client resumes with Last-Event-ID
    finally:
        await hub.close()
