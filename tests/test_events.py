"""What the store's transitions write to the partition's event stream, on fakeredis and a real redis-server.

An entry says what changed (task, version, kind, state and a few fields for metrics and filters), never the
record itself: readers fetch the record once when someone needs it.
"""

from __future__ import annotations

import json

import pytest
from redis.asyncio import Redis

from shared.feed import TaskEvent, parse_event_id, read_after
from shared.store import StatusStore, dump_json

pytestmark = pytest.mark.anyio


async def events(store: StatusStore) -> list[TaskEvent]:
    return await read_after(store.redis, store.keys, {0: "0-0"}, count=10_000)


def kinds(found: list[TaskEvent]) -> list[tuple[str, str, str]]:
    return [(e.task_id, e.kind, e.state) for e in found]


async def test_every_change_writes_one_small_entry(store: StatusStore) -> None:
    await store.create("t1", "sleep", '{"seconds":1}', "celery", owner="o")
    await store.claim("t1", "w:1")
    await store.report("t1", 1, 0.5, "half")
    await store.finish("t1", "succeeded", owner="o", name="sleep", attempt=1, result_json='{"slept":1}')
    found = await events(store)
    assert kinds(found) == [
        ("t1", "state", "queued"),
        ("t1", "state", "running"),
        ("t1", "progress", "running"),
        ("t1", "state", "succeeded"),
    ]
    assert [e.version for e in found] == [1, 2, 3, 4]
    final = await store.read("t1")
    assert final is not None
    assert found[-1].version == final.version  # the last entry names the record as it is now
    last = found[-1]
    assert (last.owner, last.name, last.executor) == ("o", "sleep", "celery")
    assert last.created_us <= last.started_us <= last.at_us
    raw = await store.redis.xrange(store.keys.events(0))
    assert all(b"slept" not in value for _, fields in raw for value in fields.values())  # no copy of the record


async def test_a_short_task_writes_one_entry_for_its_start_and_end(store: StatusStore) -> None:
    await store.create("t1", "noop", "{}", "background")
    started = (dump_json("w:1"), '"2026-01-01T00:00:00Z"', 1_767_225_600_000_000)
    await store.finish("t1", "succeeded", owner="", name="noop", started=started)
    found = await events(store)
    assert kinds(found) == [("t1", "state", "queued"), ("t1", "state", "succeeded")]
    assert found[-1].with_start  # it went through `running` in the same write (metrics count it)
    assert not found[0].with_start


async def test_history_records_each_state_entered(store: StatusStore) -> None:
    await store.create("t1", "fail", "{}", "background")
    await store.claim("t1", "host:7")
    await store.report("t1", 1, 0.2, None)
    await store.finish("t1", "failed", owner="", name="fail", attempt=1, error="RuntimeError: boom")
    record = json.loads((await store.get_json("t1")) or b"{}")
    assert [(h["state"], h["attempt"], h["worker"]) for h in record["history"]] == [
        ("queued", 0, None),
        ("running", 1, "host:7"),
        ("failed", 1, "host:7"),
    ]
    assert [h["at"] for h in record["history"]] == [record["created_at"], record["started_at"], record["finished_at"]]


async def test_a_heartbeat_without_news_writes_nothing(store: StatusStore) -> None:
    await store.create("t1", "sleep", "{}", "background")
    await store.claim("t1", "w:1")
    await store.report("t1", 1, 0.25, "a quarter")
    before = await store.read("t1")
    for _ in range(3):
        await store.report("t1", 1, 0.25, "a quarter")  # what the keeper writes as a heartbeat
    after = await store.read("t1")
    assert before is not None
    assert after is not None
    assert len(await events(store)) == 3
    assert before.etag == after.etag  # the heartbeat changed nothing a client sees
    await store.report("t1", 1, 0.25, "new message")
    assert len(await events(store)) == 4


async def test_refused_transitions_write_nothing(store: StatusStore) -> None:
    await store.create("t1", "noop", "{}", "background")
    await store.claim("t1", "w:1")
    await store.finish("t1", "succeeded", owner="", name="noop", attempt=1, result_json="1")
    count = len(await events(store))
    assert await store.claim("t1", "w:2") == 0
    await store.report("t1", 1, 0.9, "late")
    await store.finish("t1", "failed", owner="", name="noop", attempt=1, error="x")
    assert await store.cancel("t1") is not None
    assert len(await events(store)) == count == 3


async def test_cancelling_a_queued_task_writes_its_end_and_asking_a_running_one_does_not(store: StatusStore) -> None:
    await store.create("q", "sleep", "{}", "celery")
    await store.cancel("q")
    await store.create("r", "sleep", "{}", "celery")
    await store.claim("r", "w:1")
    await store.cancel("r")
    await store.cancel("r")
    assert kinds(await events(store)) == [
        ("q", "state", "queued"),
        ("q", "state", "cancelled"),
        ("r", "state", "queued"),
        ("r", "state", "running"),
    ]


async def test_reading_after_an_id_is_exclusive(store: StatusStore) -> None:
    await store.create("t1", "sleep", "{}", "background")
    await store.claim("t1", "w:1")
    first, second = await events(store)
    after_first = await read_after(store.redis, store.keys, {0: first.id})
    assert [e.id for e in after_first] == [second.id]
    assert await read_after(store.redis, store.keys, {0: second.id}) == []


async def test_the_stream_is_trimmed_to_about_its_length(redis_client: Redis) -> None:
    store = StatusStore(redis_client, ttl_seconds=600, events_maxlen=100)
    await store.create("t1", "cpu", "{}", "background")
    await store.claim("t1", "w:1")
    for step in range(1, 1001):
        await store.report("t1", 1, step / 1000, None)
    # Approximate trimming drops whole nodes (of 100 entries by default): at least the length asked is kept.
    assert 100 <= await redis_client.xlen(store.keys.events(0)) <= 100 + 100


async def test_the_etag_is_the_version_and_follows_what_a_client_sees(store: StatusStore) -> None:
    await store.create("t1", "sleep", "{}", "background")
    queued = await store.read("t1")
    await store.claim("t1", "w:1")
    running = await store.read("t1")
    again = await store.read("t1")
    assert queued is not None
    assert running is not None
    assert again is not None
    assert queued.etag != running.etag
    assert running.etag == again.etag == f'"{running.version}"'


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("1718000000000-0", (1718000000000, 0)),
        ("0-0", (0, 0)),
        ("99999999999999999999-0", None),  # past 64 bits: Redis would refuse it
        ("18446744073709551615-18446744073709551615", (2**64 - 1, 2**64 - 1)),
        ("nan", None),
        ("-1-0", None),
        ("12", None),
    ],
)
def test_only_real_stream_ids_are_accepted(text: str, parsed: tuple[int, int] | None) -> None:
    assert parse_event_id(text) == parsed
