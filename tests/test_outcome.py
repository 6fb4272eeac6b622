"""How a run's stored end becomes the Celery task's own end (tests/test_flower.py sees it through Flower)."""

from __future__ import annotations

import pytest
from celery.exceptions import Ignore

from shared.snapshot import Snapshot
from shared.store import StatusStore
from worker.outcome import NotRunHere, TaskCancelled, TaskFailed, end_as_stored

pytestmark = pytest.mark.anyio


class Reads:
    """The record as the entry point would read it after the run, and how often it did."""

    def __init__(self, snapshot: Snapshot | None) -> None:
        self.snapshot = snapshot
        self.count = 0

    def __call__(self) -> Snapshot | None:
        self.count += 1
        return self.snapshot


async def stored(store: StatusStore, state: str, error: str | None = None) -> Reads:
    """A record that reached `state` through the store's own transitions."""
    await store.create("t1", "fail", "{}", "celery")
    if state == "running":
        await store.claim("t1", "w1:1")
    elif state == "cancelled":
        await store.cancel("t1")
    elif state != "queued":
        await store.finish("t1", state, owner="", name="fail", error=error)
    snapshot = await store.read("t1")
    assert snapshot is not None
    assert snapshot.state == state
    return Reads(snapshot)


async def test_a_success_returns_without_reading_the_record(store: StatusStore) -> None:
    reads = await stored(store, "succeeded")
    end_as_stored("t1", "succeeded", reads)
    assert reads.count == 0


@pytest.mark.parametrize("state", ["failed", "lost"])
async def test_a_failure_raises_the_records_error(store: StatusStore, state: str) -> None:
    reads = await stored(store, state, "RuntimeError: boom")
    with pytest.raises(TaskFailed, match=r"^RuntimeError: boom$"):
        end_as_stored("t1", state, reads)
    assert reads.count == 1


def test_a_failure_whose_record_cannot_be_read_still_fails() -> None:
    with pytest.raises(TaskFailed, match="could not be read"):
        end_as_stored("t1", "failed", Reads(None))


async def test_a_cancel_is_an_ignore_announced_as_revoked(store: StatusStore) -> None:
    reads = await stored(store, "cancelled")
    with pytest.raises(TaskCancelled) as raised:
        end_as_stored("t1", "cancelled", reads)
    assert isinstance(raised.value, Ignore)  # acknowledged, with no outcome event of Celery's own
    assert reads.count == 0


@pytest.mark.parametrize("state", ["queued", "running", "succeeded", "failed"])
async def test_a_delivery_that_did_not_run_says_nothing(store: StatusStore, state: str) -> None:
    with pytest.raises(NotRunHere):
        end_as_stored("t1", None, await stored(store, state, "E: x" if state == "failed" else None))


def test_a_delivery_whose_record_cannot_be_read_says_nothing() -> None:
    with pytest.raises(NotRunHere):
        end_as_stored("t1", None, Reads(None))


async def test_an_optimistic_run_refused_by_a_cancel_is_announced_as_revoked(store: StatusStore) -> None:
    with pytest.raises(TaskCancelled):
        end_as_stored("t1", None, await stored(store, "cancelled"))
