"""The per-process event hub: one reader hands waiters of a task its newer records and feeds every-task
subscribers, reading each changed record once."""

from __future__ import annotations

import pytest

from api.hub import Change, EventHub
from shared.store import StatusStore

pytestmark = pytest.mark.anyio


async def test_a_waiter_gets_the_newer_record_of_its_task_only(store: StatusStore) -> None:
    hub = EventHub(store)
    await store.create("mine", "sleep", "{}", "background")
    await store.create("other", "sleep", "{}", "background")
    try:
        async with hub.task_changes("mine") as mine:
            await store.claim("other", "w:1")
            await store.claim("mine", "w:1")
            got = await mine.wait(10)
            assert got is not None
            assert (got.task_id, got.state) == ("mine", "running")
            assert await mine.wait(0.2) is None  # one change, one wake (the other task's did not count)
    finally:
        await hub.close()


async def test_a_subscriber_gets_the_changes_in_order_with_the_latest_records(store: StatusStore) -> None:
    hub = EventHub(store)
    try:
        async with hub.all_changes(None) as feed:
            await store.create("a", "noop", "{}", "celery")
            await store.create("b", "noop", "{}", "celery")
            await store.claim("a", "w:1")
            got: list[Change] = []
            while not any(c.event.task_id == "a" and c.event.state == "running" for c in got):
                change = await feed.next(10)
                assert change is not None
                got.append(change)
        # In stream order; changes that land in one read are handed over once per task (its last one, with
        # its record): the record is the same either way.
        positions = [c.event.position for c in got]
        assert positions == sorted(positions)
        assert {c.event.task_id for c in got} == {"a", "b"}
        assert all(c.snapshot.task_id == c.event.task_id for c in got)
        assert got[-1].snapshot.state == "running"
    finally:
        await hub.close()


async def test_a_subscriber_sees_only_its_owners_changes(store: StatusStore) -> None:
    hub = EventHub(store)
    try:
        async with hub.all_changes("alice") as feed:
            await store.create("theirs", "noop", "{}", "celery", owner="bob")
            await store.create("mine", "noop", "{}", "celery", owner="alice")
            change = await feed.next(10)
        assert change is not None
        assert change.event.task_id == "mine"
    finally:
        await hub.close()


async def test_the_hub_follows_from_its_start(store: StatusStore) -> None:
    await store.create("before", "noop", "{}", "background")
    hub = EventHub(store)
    try:
        await hub.start()
        async with hub.all_changes(None) as feed:
            await store.create("after", "noop", "{}", "background")
            first = await feed.next(10)
        assert first is not None
        assert (first.event.task_id, first.snapshot.state) == ("after", "queued")  # "before" was not replayed
    finally:
        await hub.close()


async def test_a_subscriber_that_falls_behind_is_told_to_resume(store: StatusStore) -> None:
    hub = EventHub(store)
    try:
        async with hub.all_changes(None, size=2) as feed, hub.task_changes("t3") as last:
            for i in range(4):
                await store.create(f"t{i}", "noop", "{}", "background")
                await store.claim(f"t{i}", "w:1")
            # Not read meanwhile (a slow client). The hub offers a batch to watchers, then to subscribers, in one
            # go: once t3's watcher has its last change, the feed was offered every task's, 4 into room for 2.
            seen = None
            while seen is None or seen.state != "running":
                seen = await last.wait(10)
                assert seen is not None
            assert feed.overflowed
            assert await feed.next(1) is None  # the stream closes there; the client resumes with Last-Event-ID
    finally:
        await hub.close()


async def test_a_hub_nobody_waits_on_reads_nothing(store: StatusStore) -> None:
    hub = EventHub(store)
    try:
        assert not hub.running
        await store.create("t", "noop", "{}", "background")
        assert not hub.running  # no reader without a waiter: no command per task
        async with hub.task_changes("t"):
            assert hub.running
    finally:
        await hub.close()
