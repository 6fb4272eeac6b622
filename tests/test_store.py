"""The status store's contract, on fakeredis and on a real redis-server alike."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.clock import RedisClock
from shared.keys import ACTIVE, Keyspace
from shared.listing import Cursor, list_page
from shared.record import RECORD_FIELDS
from shared.store import (
    NEVER_STARTED,
    PROCESS_LOST,
    WORKER_LOST,
    CancelOutcome,
    FinishReply,
    IdempotencyConflict,
    ProgressReply,
    Requeue,
    StatusStore,
    dump_json,
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
W1 = "w:1"


class FixedClock(RedisClock):
    """A clock the test sets, so that creation order (the listing's order) is exact."""

    def __init__(self, at: float = 1_800_000_000.0) -> None:
        super().__init__()
        self.at = at
        self._base = at  # synced: the store never asks Redis

    def now(self) -> float:
        return self.at


async def record(store: StatusStore, task_id: str) -> dict[str, Any]:
    raw = await store.get_json(task_id)
    assert raw is not None
    parsed: dict[str, Any] = json.loads(raw)
    return parsed


def lazy(worker: str = W1) -> tuple[str, str, int]:
    return dump_json(worker), '"2026-01-01T00:00:00Z"', 1_767_225_600_000_000


async def test_create_writes_a_queued_record_with_exactly_the_contract_fields(store: StatusStore) -> None:
    created = await store.create("t1", "sleep", '{"seconds":1.0}', "celery")
    stored = await record(store, "t1")
    assert json.loads(created.snapshot.json) == stored
    assert set(stored) == CONTRACT_FIELDS == set(RECORD_FIELDS)
    assert stored["id"] == "t1"
    assert stored["state"] == "queued"
    assert stored["params"] == {"seconds": 1.0}
    assert stored["progress"] == 0.0
    assert (stored["attempts"], stored["attempt_errors"], stored["executor"], stored["worker"]) == (
        0,
        [],
        "celery",
        None,
    )
    assert stored["created_at"].endswith("Z")
    assert stored["started_at"] is None
    assert stored["finished_at"] is None
    validated = await store.get("t1")
    assert validated is not None
    assert validated.created_at.tzinfo is not None


async def test_a_read_is_one_string_and_private_fragments_stay_private(store: StatusStore) -> None:
    await store.create("t1", "noop", "{}", "celery", owner="alice-hash", max_attempts=3)
    assert await store.redis.type(store.keys.record("t1")) == b"string"
    snapshot = await store.read("t1")
    assert snapshot is not None
    assert b"alice-hash" not in snapshot.json  # the owner is never returned
    assert set(json.loads(snapshot.json)) == CONTRACT_FIELDS


async def test_unknown_id_reads_as_none(store: StatusStore) -> None:
    assert await store.get_json("nope") is None
    assert await store.get("nope") is None
    assert await store.cancel("nope") is None


async def test_claim_takes_a_queued_task_once(store: StatusStore) -> None:
    await store.create("t1", "noop", "{}", "background")
    assert await store.claim("t1", W1) == 1
    assert await store.claim("t1", "w:2") == 0  # a duplicate delivery does not start it again
    rec = await record(store, "t1")
    assert (rec["state"], rec["worker"], rec["attempts"]) == ("running", W1, 1)
    assert rec["started_at"] is not None


async def test_a_claim_whose_reply_was_lost_can_be_repeated(store: StatusStore) -> None:
    await store.create("t1", "noop", "{}", "celery")
    started = ('"2026-01-01T00:00:00Z"', 1_767_225_600_000_000)
    assert await store.claim("t1", W1, started=started) == 1
    assert await store.claim("t1", W1, started=started) == 1  # the same claim: the same attempt
    assert await store.claim("t1", "w:2", started=started) == 0  # anyone else: refused


async def test_claim_refuses_unknown_and_finished_tasks(store: StatusStore) -> None:
    assert await store.claim("ghost", W1) == 0
    assert await store.get_json("ghost") is None  # refusing did not create anything
    await store.create("t1", "noop", "{}", "background")
    await store.claim("t1", W1)
    await store.finish("t1", "succeeded", owner="", name="noop", attempt=1, result_json="1")
    assert await store.claim("t1", W1) == 0
    assert (await record(store, "t1"))["state"] == "succeeded"


async def test_progress_updates_a_running_task_and_its_version(store: StatusStore) -> None:
    await store.create("t1", "sleep", "{}", "background")
    await store.claim("t1", W1)
    before = await store.read("t1")
    assert await store.report("t1", 1, 0.25, "a quarter") is ProgressReply.CONTINUE
    after = await store.read("t1")
    assert before is not None
    assert after is not None
    assert after.version == before.version + 1
    assert after.etag != before.etag
    rec = json.loads(after.json)
    assert (rec["progress"], rec["message"]) == (0.25, "a quarter")
    assert await store.report("t1", 1, 0.25, "a quarter") is ProgressReply.CONTINUE  # a heartbeat only
    assert (await store.read("t1")).version == after.version  # type: ignore[union-attr]


async def test_late_progress_cannot_resurrect_a_finished_task(store: StatusStore) -> None:
    await store.create("t1", "sleep", "{}", "background")
    await store.claim("t1", W1)
    reply = await store.finish("t1", "succeeded", owner="", name="sleep", attempt=1, result_json='{"slept":1}')
    assert reply == (FinishReply.ENDED, "succeeded")
    assert await store.report("t1", 1, 0.5, "late") is ProgressReply.NOT_RUNNING
    rec = await record(store, "t1")
    assert (rec["state"], rec["progress"], rec["message"], rec["result"]) == ("succeeded", 1.0, None, {"slept": 1})


async def test_a_terminal_state_never_changes(store: StatusStore) -> None:
    await store.create("t1", "fail", "{}", "background")
    await store.claim("t1", W1)
    assert (await store.finish("t1", "failed", owner="", name="fail", attempt=1, error="RuntimeError: boom"))[0] is (
        FinishReply.ENDED
    )
    late = await store.finish("t1", "succeeded", owner="", name="fail", attempt=1, result_json="42")
    assert late == (FinishReply.NOT_OURS, "")
    rec = await record(store, "t1")
    assert (rec["state"], rec["error"], rec["result"]) == ("failed", "RuntimeError: boom", None)
    assert [(e["attempt"], e["error"]) for e in rec["attempt_errors"]] == [(1, "RuntimeError: boom")]
    assert rec["finished_at"] is not None


async def test_a_short_task_writes_its_start_with_its_end(store: StatusStore) -> None:
    await store.create("t1", "noop", '{"value":1}', "background")
    reply = await store.finish("t1", "succeeded", owner="", name="noop", started=lazy(), result_json='{"value":1}')
    assert reply == (FinishReply.ENDED, "succeeded")
    rec = await record(store, "t1")
    assert (rec["state"], rec["attempts"], rec["worker"], rec["progress"]) == ("succeeded", 1, W1, 1.0)
    assert rec["started_at"] == "2026-01-01T00:00:00Z"
    assert [(h["state"], h["attempt"], h["worker"]) for h in rec["history"]] == [
        ("queued", 0, None),
        ("running", 1, W1),
        ("succeeded", 1, W1),
    ]
    assert await store.redis.zscore(store.keys.leases(0), "t1") is None  # its in-process lease is gone


async def test_a_short_task_cancelled_while_it_ran_keeps_its_cancellation(store: StatusStore) -> None:
    await store.create("t1", "noop", "{}", "celery")
    await store.cancel("t1")
    reply = await store.finish("t1", "succeeded", owner="", name="noop", started=lazy(), result_json="1")
    assert reply == (FinishReply.NOT_OURS, "")  # the answer was "cancelled": so it stays
    assert (await record(store, "t1"))["state"] == "cancelled"


async def test_a_short_task_whose_start_was_written_meanwhile_still_ends(store: StatusStore) -> None:
    await store.create("t1", "noop", "{}", "celery")
    worker, at, micros = lazy()
    assert await store.claim("t1", W1, started=(at, micros)) == 1  # the keeper's claim landed, its reply lost
    reply = await store.finish("t1", "succeeded", owner="", name="noop", started=(worker, at, micros), result_json="1")
    assert reply == (FinishReply.ENDED, "succeeded")
    assert (await record(store, "t1"))["attempts"] == 1


async def test_finished_records_expire_and_live_ones_do_not(store: StatusStore) -> None:
    await store.create("live", "sleep", "{}", "background")
    await store.claim("live", W1)
    await store.create("done", "noop", "{}", "background")
    await store.claim("done", W1)
    await store.finish("done", "succeeded", owner="", name="noop", attempt=1)
    assert await store.redis.ttl(store.keys.record("live")) == -1
    assert 0 < await store.redis.ttl(store.keys.record("done")) <= store.ttl_seconds


async def test_cancel_a_queued_task_takes_effect_at_once(store: StatusStore) -> None:
    await store.create("t1", "sleep", "{}", "celery")
    reply = await store.cancel("t1")
    assert reply is not None
    outcome, snapshot = reply
    assert outcome is CancelOutcome.CANCELLED
    assert snapshot.state == "cancelled"
    assert await store.claim("t1", W1) == 0  # a worker that receives it later does not run it
    assert 0 < await store.redis.ttl(store.keys.record("t1")) <= store.ttl_seconds
    assert await store.redis.zscore(store.keys.index(0, "", "sleep", "cancelled"), "t1") is not None
    assert await store.redis.zscore(store.keys.index(0, "", "sleep", ACTIVE), "t1") is None


async def test_a_stop_asked_while_it_runs_makes_it_end_cancelled_whatever_it_returns(store: StatusStore) -> None:
    await store.create("t1", "sleep", "{}", "celery")
    await store.claim("t1", W1)
    reply = await store.cancel("t1")
    assert reply is not None
    outcome, snapshot = reply
    assert outcome is CancelOutcome.STOPPING
    assert snapshot.state == "running"
    assert set(json.loads(snapshot.json)) == CONTRACT_FIELDS  # the private cancel flag is not part of the record
    assert await store.report("t1", 1, 0.5, None) is ProgressReply.STOP_ASKED
    # It finished anyway before it noticed: the client was told it would end cancelled, so it does.
    reply2 = await store.finish("t1", "succeeded", owner="", name="sleep", attempt=1, result_json="42")
    assert reply2 == (FinishReply.ENDED, "cancelled")
    rec = await record(store, "t1")
    assert (rec["state"], rec["result"], rec["error"]) == ("cancelled", None, None)
    again = await store.cancel("t1")
    assert again is not None
    assert again[0] is CancelOutcome.FINISHED


async def test_a_stop_asked_is_never_retried(store: StatusStore) -> None:
    await store.create("t1", "flaky", "{}", "celery", max_attempts=3)
    await store.claim("t1", W1)
    await store.cancel("t1")
    reply = await store.finish("t1", "failed", owner="", name="flaky", attempt=1, error="E: x", retry_delay=0.1)
    assert reply == (FinishReply.ENDED, "cancelled")


async def test_a_revoke_that_killed_the_running_attempt_ends_it_cancelled(store: StatusStore) -> None:
    await store.create("t1", "sleep", "{}", "celery")
    await store.claim("t1", W1)
    reply = await store.cancel("t1", terminated=True)
    assert reply is not None
    assert reply[0] is CancelOutcome.CANCELLED
    assert (await record(store, "t1"))["state"] == "cancelled"
    assert await store.redis.zscore(store.keys.leases(0), "t1") is None


async def test_an_idempotency_key_returns_the_first_task_and_refuses_a_different_body(store: StatusStore) -> None:
    first = await store.create("a", "noop", '{"value":1}', "celery", idempotency=("k1", "fp1"))
    again = await store.create("b", "noop", '{"value":1}', "celery", idempotency=("k1", "fp1"))
    assert (first.new, again.new) == (True, False)
    assert again.task_id == "a"
    assert again.snapshot.json == first.snapshot.json
    assert await store.get_json("b") is None  # the replay created nothing
    with pytest.raises(IdempotencyConflict):
        await store.create("c", "noop", '{"value":2}', "celery", idempotency=("k1", "fp2"))
    other_owner = await store.create("d", "noop", '{"value":1}', "celery", owner="o2", idempotency=("k1", "fp1"))
    assert other_owner.new  # keys are scoped to their owner
    await store.forget_idempotency_key("", "k1")
    assert (await store.create("e", "noop", '{"value":1}', "celery", idempotency=("k1", "fp1"))).new


async def test_in_process_tasks_are_leased_from_creation_and_celery_ones_from_their_start(store: StatusStore) -> None:
    leases = store.keys.leases(0)
    await store.create("bg", "noop", "{}", "background", lease="q")
    await store.create("cel", "noop", "{}", "celery")
    assert await store.redis.zscore(leases, "bg") is not None
    assert await store.redis.zscore(leases, "cel") is None  # the broker keeps a queued Celery task
    await store.claim("cel", W1)
    assert await store.redis.zscore(leases, "cel") is not None
    await store.finish("cel", "succeeded", owner="", name="noop", attempt=1)
    assert await store.redis.zscore(leases, "cel") is None


def expired(store: StatusStore) -> StatusStore:
    """The same Redis seen by a store whose leases are already over when taken."""
    return StatusStore(store.redis, ttl_seconds=store.ttl_seconds, lease_seconds=-1)


async def test_a_dead_in_process_task_ends_lost_with_its_attempt_error(store: StatusStore) -> None:
    await expired(store).create("t", "sleep", "{}", "background", lease="q")
    await expired(store).claim("t", W1)
    assert await store.expired_leases() == ["t"]
    assert await store.expire_lease("t", can_requeue=True) == "lost"
    rec = await record(store, "t")
    assert (rec["state"], rec["error"]) == ("lost", PROCESS_LOST)
    assert [(e["attempt"], e["error"]) for e in rec["attempt_errors"]] == [(1, PROCESS_LOST)]
    assert await store.expired_leases() == []
    assert await store.redis.ttl(store.keys.record("t")) > 0
    assert await store.redis.zscore(store.keys.index(0, "", "sleep", "lost"), "t") is not None


async def test_an_in_process_task_whose_process_died_before_starting_it_ends_lost(store: StatusStore) -> None:
    await expired(store).create("t", "sleep", "{}", "background", lease="q")
    assert await store.expire_lease("t", can_requeue=True) == "lost"
    rec = await record(store, "t")
    assert (rec["state"], rec["error"], rec["attempt_errors"]) == ("lost", NEVER_STARTED, [])


async def test_a_lease_that_has_not_run_out_by_redis_clock_is_left_alone(store: StatusStore) -> None:
    await store.create("t", "sleep", "{}", "background", lease="q")
    await store.claim("t", W1)
    # A process whose own clock runs 45 s ahead still judges by Redis's clock.
    ahead = StatusStore(store.redis, ttl_seconds=600, clock=FixedClock(RedisClock().now() + 45))
    assert await store.expire_lease("t", can_requeue=True) == "skip"
    assert await ahead.expire_lease("t", can_requeue=True) == "skip"  # the script asks Redis for the time
    assert (await record(store, "t"))["state"] == "running"


async def test_a_celery_task_whose_worker_died_is_requeued_while_it_has_attempts(store: StatusStore) -> None:
    await store.create("t", "sleep", '{"seconds":1.0}', "celery", owner="o", max_attempts=2)
    await expired(store).claim("t", W1)
    assert await store.expire_lease("t", can_requeue=False) == "skip"  # left for a process that can send it
    assert (await record(store, "t"))["state"] == "running"
    requeue = await store.expire_lease("t", can_requeue=True)
    assert requeue == Requeue("t", "sleep", '{"seconds":1.0}', "o")
    rec = await record(store, "t")
    assert (rec["state"], rec["attempts"], rec["error"]) == ("queued", 1, WORKER_LOST)
    assert await store.expire_lease("t", can_requeue=True) == "skip"  # another sweeper: nothing left to do
    # the first attempt's process was only slow: it learns it lost the task, and cannot end it
    assert await store.report("t", 1, 0.9, None) is ProgressReply.NOT_RUNNING
    assert (await store.finish("t", "succeeded", owner="o", name="sleep", attempt=1))[0] is FinishReply.NOT_OURS
    await store.release("t")
    assert await store.redis.zscore(store.keys.leases(0), "t") is None
    assert await expired(store).claim("t", "w:2") == 2
    await store.release("t")  # too late to matter: a running task keeps its lease
    assert await store.redis.zscore(store.keys.leases(0), "t") is not None
    assert await store.expire_lease("t", can_requeue=True) == "lost"  # out of attempts
    rec = await record(store, "t")
    assert rec["state"] == "lost"
    assert [(e["attempt"], e["error"]) for e in rec["attempt_errors"]] == [(1, WORKER_LOST), (2, PROCESS_LOST)]


async def test_a_cancelled_task_whose_worker_died_ends_cancelled_not_requeued(store: StatusStore) -> None:
    await store.create("t", "sleep", "{}", "celery", max_attempts=3)
    await expired(store).claim("t", W1)
    await store.cancel("t")
    assert await store.expire_lease("t", can_requeue=True) == "cancelled"
    assert (await record(store, "t"))["state"] == "cancelled"


async def test_a_message_never_confirmed_sent_is_sent_again_without_using_an_attempt(store: StatusStore) -> None:
    await expired(store).create("t", "noop", "{}", "celery", lease="d")
    requeue = await store.expire_lease("t", can_requeue=True)
    assert isinstance(requeue, Requeue)
    rec = await record(store, "t")
    assert (rec["state"], rec["attempts"], rec["attempt_errors"]) == ("queued", 0, [])
    await store.release("t")
    assert await store.redis.zscore(store.keys.leases(0), "t") is None


async def test_a_failed_attempt_is_queued_again_with_its_error(store: StatusStore) -> None:
    await store.create("t", "flaky", "{}", "celery", max_attempts=3)
    assert await store.claim("t", W1) == 1
    reply = await store.finish(
        "t", "failed", owner="", name="flaky", attempt=1, error="ValueError: first", retry_delay=5
    )
    assert reply == (FinishReply.RETRYING, "queued")
    again = await store.finish("t", "failed", owner="", name="flaky", attempt=1, error="twice", retry_delay=5)
    assert again[0] is FinishReply.NOT_OURS  # that attempt is over
    rec = await record(store, "t")
    assert (rec["state"], rec["error"]) == ("queued", "ValueError: first")
    assert await store.redis.zscore(store.keys.leases(0), "t") is not None  # a process dying meanwhile is noticed
    assert await store.claim("t", W1) == 2
    await store.finish("t", "succeeded", owner="", name="flaky", attempt=2, result_json='"ok"')
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
    page = await list_page(store, owner="bob")
    assert [json.loads(item)["id"] for item in page.items] == ["theirs"]


# -- listing -------------------------------------------------------------------------------------------


@pytest.fixture
def timed(store: StatusStore) -> StatusStore:
    """The same Redis through a store whose clock the test moves, one second per task."""
    return StatusStore(store.redis, ttl_seconds=600, clock=FixedClock())


async def _create(store: StatusStore, task_id: str, name: str = "noop", **kwargs: Any) -> None:
    assert isinstance(store.clock, FixedClock)
    store.clock.at += 1
    await store.create(task_id, name, "{}", "background", **kwargs)


async def _ids(store: StatusStore, **query: Any) -> tuple[list[str], Cursor | None]:
    page = await list_page(store, owner=query.pop("owner", ""), **query)
    return [json.loads(item)["id"] for item in page.items], page.next_cursor


async def test_listing_pages_newest_first_without_gaps_or_repeats(timed: StatusStore) -> None:
    ids = [f"t{i:02d}" for i in range(11)]
    for task_id in ids:
        await _create(timed, task_id, "noop" if int(task_id[1:]) % 2 else "sleep")
    seen: list[str] = []
    cursor: Cursor | None = None
    pages = 0
    while True:
        page, cursor = await _ids(timed, limit=4, cursor=cursor)
        seen += page
        pages += 1
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    assert pages == 3


async def test_listing_pages_through_tasks_created_in_the_same_microsecond(store: StatusStore) -> None:
    same = StatusStore(store.redis, ttl_seconds=600, clock=FixedClock())
    ids = {f"same-{i}" for i in range(7)}
    for task_id in ids:
        await same.create(task_id, "noop", "{}", "background")
    seen: list[str] = []
    cursor: Cursor | None = None
    for _ in range(10):
        page, cursor = await _ids(same, limit=2, cursor=cursor)
        seen += page
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)
    assert len(seen) == len(ids)


async def test_listing_filters_by_state_and_name(timed: StatusStore) -> None:
    for i in range(6):
        await _create(timed, f"s{i}", "sleep" if i % 2 else "noop")
    await timed.claim("s1", W1)
    await timed.claim("s4", W1)
    await timed.claim("s2", W1)
    await timed.finish("s2", "failed", owner="", name="noop", attempt=1, error="E: x")
    assert await _ids(timed, state="running") == (["s4", "s1"], None)
    assert await _ids(timed, state="queued") == (["s5", "s3", "s0"], None)
    assert await _ids(timed, state="failed") == (["s2"], None)
    assert await _ids(timed, state="succeeded") == ([], None)
    assert (await _ids(timed, name="sleep"))[0] == ["s5", "s3", "s1"]
    assert (await _ids(timed, name="sleep", state="running"))[0] == ["s1"]
    assert (await _ids(timed, name="nothing-of-that-name"))[0] == []
    first, cursor = await _ids(timed, name="noop", limit=2)
    assert first == ["s4", "s2"]
    assert cursor is not None
    assert await _ids(timed, name="noop", limit=2, cursor=cursor) == (["s0"], None)


async def test_listing_skips_records_that_expired_before_the_sweeper_pruned_them(timed: StatusStore) -> None:
    await _create(timed, "kept")
    await _create(timed, "gone")
    await timed.redis.delete(timed.keys.record("gone"))  # what expiry does to a finished record
    assert (await _ids(timed))[0] == ["kept"]


async def test_listing_reads_only_the_page_it_returns(timed: StatusStore) -> None:
    for i in range(30):
        await _create(timed, f"t{i:02d}")
    page, cursor = await _ids(timed, limit=1)
    assert page == ["t29"]
    assert cursor is not None


@pytest.mark.parametrize("garbage", ["", "%%%", "bm90LWEtY3Vyc29y", "YWJjOmRlZg==", "bmFuOngK", "aW5mOng="])
def test_a_malformed_cursor_is_refused(garbage: str) -> None:
    with pytest.raises(ValueError, match="invalid cursor"):
        Cursor.decode(garbage)


def test_a_cursor_survives_its_encoding() -> None:
    cursor = Cursor(1795327278870336, "3c8869c7-d3bd-4732-af3c-25de04a29d19")
    assert Cursor.decode(cursor.encode()) == cursor


# -- partitions ----------------------------------------------------------------------------------------


def test_ids_land_in_the_partition_asked_for_and_stay_uuids() -> None:
    keys = Keyspace(16)
    for partition in range(16):
        task_id = keys.new_task_id(partition)
        assert keys.partition_of(task_id) == partition
        assert len(task_id) == 36
        assert task_id[14] == "4"  # still a version 4 UUID
    spread = {keys.partition_of(keys.new_task_id()) for _ in range(500)}
    assert spread == set(range(16))


def test_every_key_of_a_task_shares_its_hash_tag() -> None:
    keys = Keyspace(8)
    task_id = keys.new_task_id(5)
    tag = "{5}"
    for key in (
        keys.record(task_id),
        keys.leases(5),
        keys.events(5),
        keys.index(5, "o", "noop", ACTIVE),
        keys.names(5, "o"),
        keys.owners(5),
        keys.idempotency(5, "o", "k"),
    ):
        assert tag in key


async def test_a_partitioned_store_lists_across_partitions(store: StatusStore) -> None:
    keys = Keyspace(4)
    parted = StatusStore(store.redis, ttl_seconds=600, keys=keys, clock=FixedClock())
    ids = [keys.new_task_id(i % 4) for i in range(8)]
    for task_id in ids:
        await _create(parted, task_id)
    assert {keys.partition_of(task_id) for task_id in ids} == {0, 1, 2, 3}
    seen: list[str] = []
    cursor: Cursor | None = None
    while True:
        page, cursor = await _ids(parted, limit=3, cursor=cursor)
        seen += page
        if cursor is None:
            break
    assert seen == list(reversed(ids))
