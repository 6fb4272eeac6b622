"""Events emitted by the store's transitions, on fakeredis and a real redis-server alike."""

from __future__ import annotations

import json
from typing import Any

import pytest
from redis.asyncio import Redis

from shared.feed import TaskEvent, read_all_events, read_task_events
from shared.keys import EVENTS, task_events_key, task_key
from shared.store import StatusStore

pytestmark = pytest.mark.anyio


def states(events: list[TaskEvent]) -> list[tuple[str, str]]:
    return [(event.kind, event.snapshot.state) for event in events]


def record_of(event: TaskEvent) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(event.snapshot.json)
    return parsed


async def test_every_transition_emits_the_whole_record_to_both_streams(store: StatusStore) -> None:
    await store.create("t1", "sleep", '{"seconds":1}', "celery")
    await store.start("t1", "w:1")
    await store.progress("t1", 1, 0.5, "half")
    await store.finish("t1", "succeeded", attempt=1, result_json='{"slept":1}', progress=1.0)
    mine = await read_task_events(store.redis, "t1", None)
    assert states(mine) == [("state", "queued"), ("state", "running"), ("progress", "running"), ("state", "succeeded")]
    everyone = await read_all_events(store.redis, "0-0")
    assert [record_of(e) for e in everyone] == [record_of(e) for e in mine]  # same changes, same order
    assert record_of(mine[2])["progress"] == 0.5
    assert record_of(mine[2])["message"] == "half"
    final = await store.read("t1")
    assert final is not None
    assert record_of(mine[-1]) == json.loads(final.json)  # the last event is the record as it is now


async def test_history_records_each_state_entered(store: StatusStore) -> None:
    await store.create("t1", "fail", "{}", "background")
    await store.start("t1", "host:7")
    await store.progress("t1", 1, 0.2, None)
    await store.finish("t1", "failed", attempt=1, error="RuntimeError: boom")
    snapshot = await store.read("t1")
    assert snapshot is not None
    record = json.loads(snapshot.json)
    history = record["history"]
    assert [(h["state"], h["attempt"], h["worker"]) for h in history] == [
        ("queued", 0, None),
        ("running", 1, "host:7"),
        ("failed", 1, "host:7"),
    ]
    assert [h["at"] for h in history] == [record["created_at"], record["started_at"], record["finished_at"]]


async def test_a_heartbeat_without_news_emits_nothing(store: StatusStore) -> None:
    await store.create("t1", "sleep", "{}", "background")
    await store.start("t1", "w:1")
    await store.progress("t1", 1, 0.25, "a quarter")
    before = await store.read("t1")
    for _ in range(3):
        await store.progress("t1", 1, 0.25, "a quarter")  # what the runner writes as a heartbeat
    after = await store.read("t1")
    assert before is not None
    assert after is not None
    assert states(await read_task_events(store.redis, "t1", None))[-1] == ("progress", "running")
    assert len(await read_task_events(store.redis, "t1", None)) == 3
    assert before.etag == after.etag  # the heartbeat changed only a private field
    await store.progress("t1", 1, 0.25, "new message")
    assert len(await read_task_events(store.redis, "t1", None)) == 4


async def test_refused_transitions_emit_nothing(store: StatusStore) -> None:
    await store.create("t1", "noop", "{}", "background")
    await store.start("t1", "w:1")
    await store.finish("t1", "succeeded", attempt=1, result_json="1", progress=1.0)
    count = len(await read_task_events(store.redis, "t1", None))
    assert await store.start("t1", "w:2") == 0
    await store.progress("t1", 1, 0.9, "late")
    assert await store.finish("t1", "failed", attempt=1, error="x") is False
    assert await store.cancel("t1") is not None
    assert len(await read_task_events(store.redis, "t1", None)) == count == 3
    assert len(await read_all_events(store.redis, "0-0")) == 3


async def test_cancelling_a_queued_task_emits_its_end_and_asking_a_running_one_does_not(store: StatusStore) -> None:
    await store.create("q", "sleep", "{}", "celery")
    await store.cancel("q")
    assert states(await read_task_events(store.redis, "q", None)) == [("state", "queued"), ("state", "cancelled")]
    await store.create("r", "sleep", "{}", "celery")
    await store.start("r", "w:1")
    await store.cancel("r")
    await store.cancel("r")
    assert states(await read_task_events(store.redis, "r", None)) == [("state", "queued"), ("state", "running")]


async def test_a_task_stream_expires_with_its_record(store: StatusStore) -> None:
    await store.create("t1", "noop", "{}", "background")
    await store.start("t1", "w:1")
    assert await store.redis.ttl(task_events_key("t1")) == -1  # lives as long as the unfinished record
    await store.finish("t1", "succeeded", attempt=1, result_json="null", progress=1.0)
    record_ttl = await store.redis.ttl(task_key("t1"))
    stream_ttl = await store.redis.ttl(task_events_key("t1"))
    assert 0 < stream_ttl <= store.ttl_seconds
    assert abs(stream_ttl - record_ttl) <= 1


async def test_reading_after_an_id_is_exclusive(store: StatusStore) -> None:
    await store.create("t1", "sleep", "{}", "background")
    await store.start("t1", "w:1")
    first, second = await read_task_events(store.redis, "t1", None)
    assert [e.id for e in await read_task_events(store.redis, "t1", first.id)] == [second.id]
    assert await read_task_events(store.redis, "t1", second.id) == []


async def test_streams_are_trimmed_to_about_their_length(redis_client: Redis) -> None:
    store = StatusStore(redis_client, ttl_seconds=600, task_events_maxlen=10, events_maxlen=100)
    await store.create("t1", "cpu", "{}", "background")
    await store.start("t1", "w:1")
    for step in range(1, 1001):
        await store.progress("t1", 1, step / 1000, None)
    kept = await redis_client.xlen(task_events_key("t1"))
    # Approximate trimming drops whole nodes (of 100 entries by default): at least the length asked is kept.
    assert 10 <= kept <= 10 + 100
    assert 100 <= await redis_client.xlen(EVENTS) <= 100 + 100
    newest = await read_task_events(redis_client, "t1", None)
    assert json.loads(newest[-1].snapshot.json)["progress"] == 1.0  # the newest event is never trimmed


async def test_the_etag_follows_what_a_client_sees(store: StatusStore) -> None:
    await store.create("t1", "sleep", "{}", "background")
    queued = await store.read("t1")
    await store.start("t1", "w:1")
    running = await store.read("t1")
    again = await store.read("t1")
    assert queued is not None
    assert running is not None
    assert again is not None
    assert queued.etag != running.etag
    assert running.etag == again.etag
    assert running.etag.startswith('"')
    assert running.etag.endswith('"')
