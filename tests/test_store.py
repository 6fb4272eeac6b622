"""The status store's contract, on fakeredis and on a real redis-server alike."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.keys import LEASES, index_key, task_key
from shared.record import RECORD_FIELDS
from shared.store import (
    NEVER_STARTED,
    PROCESS_LOST,
    WORKER_LOST,
    CancelOutcome,
    Cursor,
    IdempotencyConflict,
    ProgressReply,
    Requeue,
    StatusStore,
)

pytestmark = pytest.mark.anyio

CONTRACT_FIELDS = {
    "id",
    "name",
    "state",
    "progress",
    "message",
    "params",
    "result",
    "error",
    "executor",
    "worker",
    "attempts",
    "attempt_errors",
    "created_at",
    "started_at",
    "finished_at",
    "history",  # issue 6: the states entered, with when, attempt and worker
}


async def record(store: StatusStore, task_id: str) -> dict[str, Any]:
    raw = await store.get_json(task_id)
    assert raw is not None
    parsed: dict[str, Any] = json.loads(raw)
    return parsed


async def test_create_writes_a_queued_record_with_exactly_the_contract_fields(store: StatusStore) -> None:
    created = json.loads((await store.create("t1", "sleep", '{"seconds":1.0}', "celery")).record)
    stored = await record(store, "t1")
    assert created == stored
    assert set(stored) == CONTRACT_FIELDS == set(RECORD_FIELDS)
    assert stored["state"] == "queued"
    assert stored["params"] == {"seconds": 1.0}
    assert stored["progress"] == 0.0
    assert stored["attempts"] == 0
    assert stored["attempt_errors"] == []
    assert stored["executor"] == "celery"
    assert stored["worker"] is None
    assert stored["created_at"].endswith("Z")
    assert stored["started_at"] is None
    assert stored["finished_at"] is None
    validated = await store.get("t1")
    assert validated is not None
    assert validated.created_at.tzinfo is not None


async def test_unknown_id_reads_as_none(store: StatusStore) -> None:
    assert await store.get_json("nope") is None
    assert await store.get("nope") is None
    assert await store.cancel("nope") is None


async def test_start_claims_a_queued_task_once(store: StatusStore) -> None:
    await store.create("t1", "noop", "{}", "background")
    assert await store.start("t1", "w:1") == 1
    assert await store.start("t1", "w:2") == 0  # a duplicate delivery does not start it again
    rec = await record(store, "t1")
    assert rec["state"] == "running"
    assert rec["worker"] == "w:1"
    assert rec["attempts"] == 1
    assert rec["started_at"] is not None


async def test_start_refuses_unknown_and_finished_tasks(store: StatusStore) -> None:
    assert await store.start("ghost", "w:1") == 0
    assert await store.get_json("ghost") is None  # refusing did not create anything
    await store.create("t1", "noop", "{}", "background")
    await store.start("t1", "w:1")
    await store.finish("t1", attempt=1, state="succeeded", result_json="1", progress=1.0)
    assert await store.start("t1", "w:1") == 0
    assert (await record(store, "t1"))["state"] == "succeeded"


async def test_progress_updates_a_running_task(store: StatusStore) -> None:
    await store.create("t1", "sleep", "{}", "background")
    await store.start("t1", "w:1")
    assert await store.progress("t1", 1, 0.25, "a quarter") is ProgressReply.CONTINUE
    rec = await record(store, "t1")
    assert (rec["progress"], rec["message"]) == (0.25, "a quarter")


async def test_late_progress_cannot_resurrect_a_finished_task(store: StatusStore) -> None:
    await store.create("t1", "sleep", "{}", "background")
    await store.start("t1", "w:1")
    assert await store.finish("t1", attempt=1, state="succeeded", result_json='{"slept":1}', progress=1.0)
    assert await store.progress("t1", 1, 0.5, "late") is ProgressReply.NOT_RUNNING
    rec = await record(store, "t1")
    assert (rec["state"], rec["progress"], rec["message"]) == ("succeeded", 1.0, None)
    assert rec["result"] == {"slept": 1}


async def test_a_terminal_state_never_changes(store: StatusStore) -> None:
    await store.create("t1", "fail", "{}", "background")
    await store.start("t1", "w:1")
    assert await store.finish("t1", attempt=1, state="failed", error="RuntimeError: boom")
    assert not await store.finish("t1", attempt=1, state="succeeded", result_json="42", progress=1.0)
    assert not await store.finish("t1", attempt=1, state="cancelled")
    rec = await record(store, "t1")
    assert (rec["state"], rec["error"], rec["result"]) == ("failed", "RuntimeError: boom", None)
    assert [(e["attempt"], e["error"]) for e in rec["attempt_errors"]] == [(1, "RuntimeError: boom")]
    assert rec["finished_at"] is not None


async def test_finished_records_expire_and_live_ones_do_not(store: StatusStore) -> None:
    await store.create("live", "sleep", "{}", "background")
    await store.start("live", "w:1")
    await store.create("done", "noop", "{}", "background")
    await store.start("done", "w:1")
    await store.finish("done", attempt=1, state="succeeded", result_json="null", progress=1.0)
    assert await store.redis.ttl(task_key("live")) == -1
    assert 0 < await store.redis.ttl(task_key("done")) <= store.ttl_seconds


async def test_cancel_a_queued_task_takes_effect_at_once(store: StatusStore) -> None:
    await store.create("t1", "sleep", "{}", "celery")
    reply = await store.cancel("t1")
    assert reply is not None
    outcome, raw = reply
    assert outcome is CancelOutcome.CANCELLED
    assert json.loads(raw)["state"] == "cancelled"
    assert await store.start("t1", "w:1") == 0  # a worker that receives it later does not run it
    assert 0 < await store.redis.ttl(task_key("t1")) <= store.ttl_seconds


async def test_cancel_a_running_task_asks_it_to_stop(store: StatusStore) -> None:
    await store.create("t1", "sleep", "{}", "celery")
    await store.start("t1", "w:1")
    reply = await store.cancel("t1")
    assert reply is not None
    outcome, raw = reply
    assert outcome is CancelOutcome.STOPPING
    assert json.loads(raw)["state"] == "running"
    assert set(json.loads(raw)) == CONTRACT_FIELDS  # the private cancel flag is not part of the record
    assert await store.progress("t1", 1, 0.5, None) is ProgressReply.STOP_ASKED
    assert await store.finish("t1", attempt=1, state="cancelled")
    reply = await store.cancel("t1")
    assert reply is not None
    assert reply[0] is CancelOutcome.FINISHED


async def _create_at(store: StatusStore, task_id: str, name: str, when: datetime) -> None:
    await store.create(task_id, name, "{}", "background", now=when)


async def test_listing_pages_newest_first_without_gaps_or_repeats(store: StatusStore) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    ids = [f"t{i:02d}" for i in range(11)]
    for i, task_id in enumerate(ids):
        await _create_at(store, task_id, "noop", base + timedelta(seconds=i))
    seen: list[str] = []
    cursor: Cursor | None = None
    pages = 0
    while True:
        items, cursor = await store.list_json(limit=4, cursor=cursor)
        seen += [json.loads(item)["id"] for item in items]
        pages += 1
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    assert pages == 3


async def test_listing_pages_through_tasks_created_in_the_same_microsecond(store: StatusStore) -> None:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    ids = {f"same-{i}" for i in range(7)}
    for task_id in ids:
        await _create_at(store, task_id, "noop", moment)
    seen: list[str] = []
    cursor: Cursor | None = None
    for _ in range(10):
        items, cursor = await store.list_json(limit=2, cursor=cursor)
        seen += [json.loads(item)["id"] for item in items]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)
    assert len(seen) == len(ids)


async def test_listing_filters_by_state_and_name(store: StatusStore) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(6):
        await _create_at(store, f"s{i}", "sleep" if i % 2 else "noop", base + timedelta(seconds=i))
    await store.start("s1", "w:1")
    await store.start("s4", "w:1")
    running, cursor = await store.list_json(state="running")
    assert [json.loads(r)["id"] for r in running] == ["s4", "s1"]
    assert cursor is None
    sleeping, _ = await store.list_json(name="sleep")
    assert [json.loads(r)["id"] for r in sleeping] == ["s5", "s3", "s1"]
    both, _ = await store.list_json(name="sleep", state="running")
    assert [json.loads(r)["id"] for r in both] == ["s1"]
    first, cursor = await store.list_json(name="noop", limit=2)
    assert [json.loads(r)["id"] for r in first] == ["s4", "s2"]
    assert cursor is not None
    rest, cursor = await store.list_json(name="noop", limit=2, cursor=cursor)
    assert [json.loads(r)["id"] for r in rest] == ["s0"]
    assert cursor is None


async def test_listing_drops_index_entries_of_expired_records(store: StatusStore) -> None:
    await store.create("kept", "noop", "{}", "background")
    await store.create("gone", "noop", "{}", "background")
    await store.redis.delete(task_key("gone"))  # what expiry does to a finished record
    items, _ = await store.list_json()
    assert [json.loads(r)["id"] for r in items] == ["kept"]
    assert await store.redis.zscore(index_key(""), "gone") is None


@pytest.mark.parametrize("garbage", ["", "%%%", "bm90LWEtY3Vyc29y", "YWJjOmRlZg=="])
def test_a_malformed_cursor_is_refused(garbage: str) -> None:
    with pytest.raises(ValueError, match="invalid cursor"):
        Cursor.decode(garbage)


def test_a_cursor_survives_its_encoding() -> None:
    cursor = Cursor(1795327278870336.0, "3c8869c7-d3bd-4732-af3c-25de04a29d19")
    assert Cursor.decode(cursor.encode()) == cursor


async def test_an_idempotency_key_returns_the_first_task_and_refuses_a_different_body(store: StatusStore) -> None:
    first = await store.create("a", "noop", '{"value":1}', "celery", idempotency=("k1", "fp1"))
    again = await store.create("b", "noop", '{"value":1}', "celery", idempotency=("k1", "fp1"))
    assert (first.new, again.new) == (True, False)
    assert again.task_id == "a"
    assert again.record == first.record
    assert await store.get_json("b") is None  # the replay created nothing
    with pytest.raises(IdempotencyConflict):
        await store.create("c", "noop", '{"value":2}', "celery", idempotency=("k1", "fp2"))
    other_owner = await store.create("d", "noop", '{"value":1}', "celery", owner="o2", idempotency=("k1", "fp1"))
    assert other_owner.new  # keys are scoped to their owner
    await store.forget_idempotency_key("", "k1")
    assert (await store.create("e", "noop", '{"value":1}', "celery", idempotency=("k1", "fp1"))).new


async def test_in_process_tasks_are_leased_from_creation_and_celery_ones_from_their_start(store: StatusStore) -> None:
    await store.create("bg", "noop", "{}", "background")
    await store.create("cel", "noop", "{}", "celery")
    assert await store.redis.zscore(LEASES, "bg") is not None
    assert await store.redis.zscore(LEASES, "cel") is None  # the broker keeps a queued Celery task
    await store.start("cel", "w:1")
    assert await store.redis.zscore(LEASES, "cel") is not None
    await store.finish("cel", "succeeded", attempt=1, progress=1.0)
    assert await store.redis.zscore(LEASES, "cel") is None


def expired(store: StatusStore) -> StatusStore:
    """The same Redis seen by a store whose leases are already over when taken."""
    return StatusStore(store.redis, ttl_seconds=store.ttl_seconds, lease_seconds=-1)


async def test_a_dead_in_process_task_ends_lost_with_its_attempt_error(store: StatusStore) -> None:
    await expired(store).create("t", "sleep", "{}", "background")
    await expired(store).start("t", "w:1")
    assert await store.expired_leases() == ["t"]
    assert await store.expire_lease("t", can_requeue=True) == "lost"
    rec = await record(store, "t")
    assert rec["state"] == "lost"
    assert rec["error"] == PROCESS_LOST
    assert [(e["attempt"], e["error"]) for e in rec["attempt_errors"]] == [(1, PROCESS_LOST)]
    assert await store.expired_leases() == []
    assert await store.redis.ttl(task_key("t")) > 0


async def test_an_in_process_task_whose_process_died_before_starting_it_ends_lost(store: StatusStore) -> None:
    await expired(store).create("t", "sleep", "{}", "background")
    assert await store.expire_lease("t", can_requeue=True) == "lost"
    rec = await record(store, "t")
    assert (rec["state"], rec["error"], rec["attempt_errors"]) == ("lost", NEVER_STARTED, [])


async def test_a_celery_task_whose_worker_died_is_requeued_while_it_has_attempts(store: StatusStore) -> None:
    await store.create("t", "sleep", '{"seconds":1.0}', "celery", max_attempts=2)
    await expired(store).start("t", "w:1")
    assert await store.expire_lease("t", can_requeue=False) == "skip"  # left for a process that can send it
    assert (await record(store, "t"))["state"] == "running"
    requeue = await store.expire_lease("t", can_requeue=True)
    assert requeue == Requeue("t", "sleep", '{"seconds":1.0}')
    rec = await record(store, "t")
    assert (rec["state"], rec["attempts"], rec["error"]) == ("queued", 1, WORKER_LOST)
    assert await store.expire_lease("t", can_requeue=True) == "skip"  # another sweeper: nothing left to do
    # the first attempt's process was only slow: it learns it lost the task, and cannot end it
    assert await store.progress("t", 1, 0.9, None) is ProgressReply.NOT_RUNNING
    assert not await store.finish("t", "succeeded", attempt=1, progress=1.0)
    await store.release_lease("t")
    assert await store.redis.zscore(LEASES, "t") is None
    assert await expired(store).start("t", "w:2") == 2
    await store.release_lease("t")  # too late to matter: a running task keeps its lease
    assert await store.redis.zscore(LEASES, "t") is not None
    assert await store.expire_lease("t", can_requeue=True) == "lost"  # out of attempts
    rec = await record(store, "t")
    assert rec["state"] == "lost"
    assert [(e["attempt"], e["error"]) for e in rec["attempt_errors"]] == [(1, WORKER_LOST), (2, PROCESS_LOST)]


async def test_a_failed_attempt_is_queued_again_with_its_error(store: StatusStore) -> None:
    await store.create("t", "flaky", "{}", "celery", max_attempts=3)
    assert await store.start("t", "w:1") == 1
    assert await store.retry("t", 1, "ValueError: first", delay=5)
    assert not await store.retry("t", 1, "ValueError: twice", delay=5)  # that attempt is over
    rec = await record(store, "t")
    assert (rec["state"], rec["error"]) == ("queued", "ValueError: first")
    assert await store.redis.zscore(LEASES, "t") is not None  # a process that dies while waiting is noticed
    assert await store.start("t", "w:1") == 2
    assert await store.finish("t", "succeeded", attempt=2, result_json='"ok"', progress=1.0)
    rec = await record(store, "t")
    assert (rec["state"], rec["attempts"], rec["error"], rec["result"]) == ("succeeded", 2, None, "ok")
    assert [e["error"] for e in rec["attempt_errors"]] == ["ValueError: first"]


async def test_an_owner_sees_only_its_own_tasks(store: StatusStore) -> None:
    await store.create("mine", "noop", "{}", "celery", owner="alice")
    await store.create("theirs", "noop", "{}", "celery", owner="bob")
    mine = await store.read("mine")
    assert mine is not None
    assert mine.visible_to("alice")
    assert not mine.visible_to("bob")
    assert mine.visible_to(None)  # authentication off: no owner check
    assert await store.cancel("mine", "bob") is None
    assert (await record(store, "mine"))["state"] == "queued"
    items, _ = await store.list_json(owner="bob")
    assert [json.loads(item)["id"] for item in items] == ["theirs"]
    assert b"alice" not in mine.json  # the owner is never returned
