"""Following tasks against live uvicorn processes (real Redis, a real Celery worker): long-poll, SSE, metrics, logs."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from bench.redisstats import Monitor
from shared.keys import Keyspace
from shared.store import StatusStore
from tests.conftest import LiveApi
from tests.live import submit, wait_finished, wait_for
from tests.processes import Proc
from tests.sse import Event, Read, read_events

pytestmark = pytest.mark.slow


def reads_of(url: str, task_id: str, action: Callable[[], object]) -> int:
    """How many times clients (not scripts) read the task's record while `action` ran (MONITOR)."""
    monitor = Monitor(url)
    monitor.start()
    action()
    log = monitor.stop()
    key = Keyspace().record(task_id)
    return sum(1 for source, name, k in log.entries if name == "GET" and k == key and source != "lua")


def store_action(url: str, action: str, task_id: str) -> None:
    """Change a record from this process, as another API or a worker would."""

    async def run() -> None:
        client = Redis.from_url(url)
        store = StatusStore(client, ttl_seconds=600)
        if action == "create":
            await store.create(task_id, "sleep", '{"seconds":1}', "background")
        else:
            await store.claim(task_id, "elsewhere:1")
        await client.aclose()

    asyncio.run(run())


def test_a_long_poll_answers_each_change_of_a_running_task(live_api: LiveApi) -> None:
    record = submit(live_api.url, "sleep", {"seconds": 1.5})
    etag: str | None = None
    seen, polls = [record], 0
    while seen[-1]["state"] in ("queued", "running") and polls < 200:
        headers = {"If-None-Match": etag} if etag else {}
        resp = httpx.get(f"{live_api.url}/tasks/{record['id']}", params={"wait": 30}, headers=headers, timeout=40)
        polls += 1
        assert resp.status_code == 200  # every answer is a change: none ran out its 30 s
        assert resp.headers["etag"] != etag
        etag = resp.headers["etag"]
        seen.append(resp.json())
    assert seen[-1]["state"] == "succeeded"
    assert "running" in [r["state"] for r in seen]
    progress = [r["progress"] for r in seen]
    assert progress == sorted(progress)  # answered in the order the changes happened
    assert len({r["progress"] for r in seen if r["state"] == "running"}) >= 2  # it saw the bar move


def test_a_quiet_long_poll_reads_the_record_once_and_a_change_elsewhere_wakes_it(
    follow_background: LiveApi, follow_env: dict[str, str]
) -> None:
    url, task_id = follow_env["REDIS_URL"], "11111111-2222-4333-8444-555555555555"
    store_action(url, "create", task_id)  # queued, and nothing will run it
    answers: list[httpx.Response] = []

    def quiet_poll() -> None:
        answers.append(httpx.get(f"{follow_background.url}/tasks/{task_id}", params={"wait": 1.5}, timeout=20))

    assert reads_of(url, task_id, quiet_poll) == 1  # one read, then it waited: no polling loop behind it
    quiet = answers[0]
    assert quiet.status_code == 200
    assert quiet.json()["state"] == "queued"

    answer: dict[str, Any] = {}
    headers = {"If-None-Match": quiet.headers["etag"]}

    def long_poll() -> None:
        resp = httpx.get(f"{follow_background.url}/tasks/{task_id}?wait=60", headers=headers, timeout=70)
        answer.update(status=resp.status_code, record=resp.json(), at=time.monotonic())

    poller = threading.Thread(target=long_poll)
    poller.start()
    time.sleep(0.5)
    assert poller.is_alive()  # still held: nothing changed
    changed_at = time.monotonic()
    store_action(url, "start", task_id)  # a change made by another process
    poller.join(timeout=50)
    assert not poller.is_alive()  # answered long before its own 60 s
    assert answer["status"] == 200
    assert answer["record"]["state"] == "running"
    assert answer["at"] > changed_at


def test_sse_resumes_without_a_gap_after_a_forced_disconnect(live_api: LiveApi) -> None:
    task_id = submit(live_api.url, "sleep", {"seconds": 3})["id"]
    stream = f"{live_api.url}/tasks/{task_id}/events"
    first = read_events(stream, limit=3)  # the record as it is, then its changes: then the client hangs up
    assert not first.ended
    assert first.events[0].kind == "state"
    assert "running" in [e.record["state"] for e in first.events]
    last_seen = first.events[-1].record["progress"]
    wait_for(live_api.url, task_id, lambda r: r["progress"] > last_seen + 0.2, what="progress while disconnected")
    rest = read_events(stream, last_id=first.events[-1].id)
    assert rest.ended  # the server closed it after the terminal event
    assert rest.events[-1].record["state"] == "succeeded"
    assert rest.events[0].record["progress"] > last_seen  # it resumed with what changed while it was away
    versions = [int(e.id) for e in first.events + rest.events]  # event ids are the record's versions
    assert versions == sorted(set(versions))  # in order, nothing twice
    everything = read_events(stream)
    assert everything.ended
    assert [e.record for e in everything.events] == [rest.events[-1].record]  # after the end: the final record
    again = read_events(stream, last_id=rest.events[-1].id)
    assert again.status == 204  # nothing more will come: EventSource stops reconnecting
    legacy = read_events(stream, last_id="1718000000000-0")  # an id of the earlier format: the record as it is
    assert [e.record["state"] for e in legacy.events] == ["succeeded"]


def test_the_all_tasks_stream_shows_every_task_to_its_end_and_resumes(live_api: LiveApi) -> None:
    url = f"{live_api.url}/events"
    ids: list[str] = []
    collected: list[Read] = []

    def all_ended(events: list[Event]) -> bool:  # the three tasks queued after the stream opened have ended
        ended = {e.record["id"] for e in events if e.record["state"] in ("succeeded", "failed")}
        return len(ids) == 3 and set(ids) <= ended

    reader = threading.Thread(target=lambda: collected.append(read_events(url, until=all_ended)))
    reader.start()
    time.sleep(0.5)  # the stream is open before the tasks start
    for name, params in [("noop", {}), ("noop", {}), ("fail", {"message": "x"})]:
        ids.append(submit(live_api.url, name, params)["id"])
    reader.join(timeout=60)
    assert not reader.is_alive()
    events = [e for e in collected[0].events if e.record["id"] in ids]
    for task_id, end in zip(ids, ["succeeded", "succeeded", "failed"], strict=True):
        mine = [e for e in events if e.record["id"] == task_id]
        # Changes that land together may be sent once, with the record as it is then: never out of order.
        assert mine[-1].record["state"] == end
        assert [e.record["history"][-1]["state"] for e in mine][-1] == end
        versions = [len(e.record["history"]) for e in mine]
        assert versions == sorted(versions)
    positions = [tuple(map(int, e.id.split("-"))) for e in collected[0].events]
    assert positions == sorted(positions)
    first = events[0]
    later = [e.id for e in collected[0].events[collected[0].events.index(first) + 1 :]]
    resumed = read_events(url, last_id=first.id, until=lambda got: got[-1].id == later[-1] if got else False)
    # From just after the given id: what came later, each task's changes at least as fresh, none earlier.
    assert all(tuple(map(int, e.id.split("-"))) > tuple(map(int, first.id.split("-"))) for e in resumed.events)
    after_first = {e.record["id"] for e in collected[0].events[collected[0].events.index(first) + 1 :]}
    assert after_first & set(ids) <= {e.record["id"] for e in resumed.events}


def test_metrics_count_the_tasks_of_both_executors(follow_background: LiveApi, follow_celery: LiveApi) -> None:
    done = [wait_finished(api.url, submit(api.url, "noop")["id"]) for api in (follow_background, follow_celery)]
    assert [r["executor"] for r in done] == ["background", "celery"]
    for api in (follow_background, follow_celery):
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(httpx.get(f"{api.url}/metrics").text)
            for sample in family.samples
        }
        for executor in ("background", "celery"):
            assert samples[("bgt_tasks_total", (("executor", executor), ("state", "succeeded")))] >= 1
            assert samples[("bgt_task_end_to_end_seconds_count", (("executor", executor), ("state", "succeeded")))] >= 1
            assert samples[("bgt_task_run_seconds_count", (("executor", executor), ("state", "succeeded")))] >= 1
            assert samples[("bgt_task_queue_wait_seconds_count", (("executor", executor),))] >= 1
        assert samples[("bgt_redis_errors_total", (("executor", api.executor), ("source", "api")))] == 0


def test_a_running_task_shows_in_the_running_gauge(live_api: LiveApi) -> None:
    task_id = submit(live_api.url, "sleep", {"seconds": 600})["id"]
    wait_for(live_api.url, task_id, lambda r: r["state"] == "running", what="running")

    def running() -> float:
        for family in text_string_to_metric_families(httpx.get(f"{live_api.url}/metrics").text):
            for sample in family.samples:
                if sample.name == "bgt_tasks_running" and sample.labels == {"executor": live_api.executor}:
                    return sample.value
        return 0.0

    assert running() >= 1
    assert httpx.delete(f"{live_api.url}/tasks/{task_id}").status_code == 202
    assert wait_finished(live_api.url, task_id)["state"] == "cancelled"


def test_log_lines_about_a_task_name_it(live_api: LiveApi, follow_worker: Proc) -> None:
    task_id = wait_finished(live_api.url, submit(live_api.url, "fail", {"message": "logged"})["id"])["id"]
    procs = [live_api.proc] + ([follow_worker] if live_api.executor == "celery" else [])
    about: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = [json.loads(line) for proc in procs for line in proc.log().splitlines() if line.startswith("{")]
        about = [line for line in lines if task_id in line["message"]]
        if len(about) >= len(procs):
            break
        time.sleep(0.1)
    assert "shared.runner" in {line["logger"] for line in about}  # "task … failed", written where it ran
    if live_api.executor == "celery":
        assert "celery.app.trace" in {line["logger"] for line in about}  # Celery's own lines name it too
    assert all(line["task_id"] == task_id for line in about)
    assert {"asctime", "level", "logger", "message", "task_id"} <= set(about[0])
