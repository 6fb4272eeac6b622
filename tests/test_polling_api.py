"""Cheaper polling in-process (httpx over ASGI, embedded store): ETag, 304, Retry-After, ?wait, bad input."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fakeredis import FakeAsyncRedis
from fastapi import FastAPI

from api.main import create_app
from shared.settings import Settings
from shared.store import StatusStore

pytestmark = pytest.mark.anyio

T1 = "0b6c1e4a-3a52-4f7e-9a51-000000000001"
NOPE = "0b6c1e4a-3a52-4f7e-9a51-00000000ffff"


@pytest.fixture
def store() -> StatusStore:
    return StatusStore(FakeAsyncRedis(), ttl_seconds=600)


@pytest.fixture
async def client(store: StatusStore) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(Settings(executor="background", redis_url=None, progress_interval=2.5), store=store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c:
        yield c
    await app.state.hub.close()


async def test_a_record_has_an_etag_and_a_matching_if_none_match_gets_304(
    client: httpx.AsyncClient, store: StatusStore
) -> None:
    await store.create(T1, "sleep", '{"seconds":1}', "background")
    first = await client.get(f"/tasks/{T1}")
    assert first.status_code == 200
    etag = first.headers["etag"]
    assert first.headers["retry-after"] == "3"  # ceil(PROGRESS_INTERVAL): no news comes faster
    unchanged = await client.get(f"/tasks/{T1}", headers={"If-None-Match": etag})
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged.headers["etag"] == etag
    assert (await client.get(f"/tasks/{T1}", headers={"If-None-Match": f'"other", W/{etag}'})).status_code == 304
    await store.claim(T1, "w:1")
    changed = await client.get(f"/tasks/{T1}", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.json()["state"] == "running"
    assert changed.headers["etag"] != etag


async def test_a_finished_record_has_no_retry_after(client: httpx.AsyncClient, store: StatusStore) -> None:
    await store.create(T1, "noop", "{}", "background")
    await store.claim(T1, "w:1")
    await store.finish(T1, "succeeded", owner="", name="noop", attempt=1, result_json="1")
    resp = await client.get(f"/tasks/{T1}")
    assert "retry-after" not in resp.headers
    assert "etag" in resp.headers


async def test_202_answers_carry_retry_after(client: httpx.AsyncClient, store: StatusStore) -> None:
    submitted = await client.post("/tasks/noop", json={})
    assert submitted.status_code == 202
    assert submitted.headers["retry-after"] == "3"
    await store.create(T1, "sleep", "{}", "background")
    await store.claim(T1, "w:1")  # running, with no runner here: the DELETE can only ask it to stop
    stopping = await client.delete(f"/tasks/{T1}")
    assert stopping.status_code == 202
    assert stopping.headers["retry-after"] == "3"


async def test_a_long_poll_answers_with_the_change_that_woke_it(client: httpx.AsyncClient, store: StatusStore) -> None:
    await store.create(T1, "sleep", "{}", "background")
    etag = (await client.get(f"/tasks/{T1}")).headers["etag"]
    poll = asyncio.create_task(client.get(f"/tasks/{T1}?wait=30", headers={"If-None-Match": etag}))
    await asyncio.sleep(0.3)
    assert not poll.done()  # nothing changed yet, so it is still waiting
    await store.claim(T1, "w:1")
    resp = await asyncio.wait_for(poll, 25)  # well before its own 30 s: the change woke it
    assert resp.status_code == 200
    assert resp.json()["state"] == "running"


async def test_a_long_poll_that_sees_no_change_answers_304_when_its_time_is_up(
    client: httpx.AsyncClient, store: StatusStore
) -> None:
    await store.create(T1, "sleep", "{}", "background")
    etag = (await client.get(f"/tasks/{T1}")).headers["etag"]
    resp = await client.get(f"/tasks/{T1}?wait=0.3", headers={"If-None-Match": etag})
    assert resp.status_code == 304


async def test_a_long_poll_on_a_finished_task_answers_at_once(client: httpx.AsyncClient, store: StatusStore) -> None:
    await store.create(T1, "noop", "{}", "background")
    await store.finish(T1, "failed", owner="", name="noop", error="E: x")
    etag = (await client.get(f"/tasks/{T1}")).headers["etag"]
    resp = await asyncio.wait_for(client.get(f"/tasks/{T1}?wait=60", headers={"If-None-Match": etag}), 30)
    assert resp.status_code == 304


async def test_a_long_poll_with_a_stale_etag_answers_at_once(client: httpx.AsyncClient, store: StatusStore) -> None:
    await store.create(T1, "sleep", "{}", "background")
    resp = await asyncio.wait_for(client.get(f"/tasks/{T1}?wait=60", headers={"If-None-Match": '"old"'}), 30)
    assert resp.status_code == 200
    assert resp.json()["state"] == "queued"


@pytest.mark.parametrize("query", ["wait=61", "wait=-1", "wait=soon"])
async def test_a_bad_wait_is_a_422(client: httpx.AsyncClient, store: StatusStore, query: str) -> None:
    await store.create(T1, "sleep", "{}", "background")
    resp = await client.get(f"/tasks/{T1}?{query}")
    assert resp.status_code == 422
    assert "detail" in resp.json()


async def test_a_long_poll_on_an_unknown_id_is_a_404(client: httpx.AsyncClient) -> None:
    resp = await client.get(f"/tasks/{NOPE}?wait=5")
    assert resp.status_code == 404
    assert resp.json() == {"detail": f"no task with id {NOPE}"}


@pytest.mark.parametrize("path", [f"/tasks/{T1}/events", "/events"])
async def test_a_malformed_last_event_id_is_a_422(client: httpx.AsyncClient, store: StatusStore, path: str) -> None:
    await store.create(T1, "sleep", "{}", "background")
    resp = await client.get(path, headers={"Last-Event-ID": "yesterday"})
    assert resp.status_code == 422
    assert resp.json()["detail"].startswith("invalid Last-Event-ID")


async def test_events_of_an_unknown_task_are_a_404(client: httpx.AsyncClient) -> None:
    resp = await client.get(f"/tasks/{NOPE}/events")
    assert resp.status_code == 404
    assert resp.json() == {"detail": f"no task with id {NOPE}"}


@pytest.mark.parametrize("path", ["/tasks/nope", "/tasks/x:events", "/tasks/nope/events", "/tasks/nope?wait=5"])
async def test_an_id_that_is_not_a_uuid_is_a_422(client: httpx.AsyncClient, path: str) -> None:
    resp = await client.get(path)
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"] == ["path", "task_id"]


@pytest.mark.parametrize("last", ["99999999999999999999-0", "1-99999999999999999999", "nan", "-1"])
async def test_an_out_of_range_last_event_id_is_a_422(client: httpx.AsyncClient, store: StatusStore, last: str) -> None:
    await store.create(T1, "sleep", "{}", "background")
    for path in (f"/tasks/{T1}/events", "/events"):
        resp = await client.get(path, headers={"Last-Event-ID": last})
        assert resp.status_code == 422, (path, last)


async def test_events_after_the_end_answer_204_so_browsers_stop_reconnecting(
    client: httpx.AsyncClient, store: StatusStore
) -> None:
    await store.create(T1, "noop", "{}", "background")
    await store.claim(T1, "w:1")
    await store.finish(T1, "succeeded", owner="", name="noop", attempt=1, result_json="1")
    snapshot = await store.read(T1)
    assert snapshot is not None
    resp = await client.get(f"/tasks/{T1}/events", headers={"Last-Event-ID": str(snapshot.version)})
    assert resp.status_code == 204


async def test_the_catalog_lists_each_task_with_its_parameter_schema(client: httpx.AsyncClient) -> None:
    catalog = {item["name"]: item for item in (await client.get("/catalog")).json()}
    assert set(catalog) == {"noop", "sleep", "cpu", "fail"}
    seconds = catalog["sleep"]["params_schema"]["properties"]["seconds"]
    assert (seconds["type"], seconds["minimum"], seconds["maximum"]) == ("number", 0, 3600)
    assert catalog["sleep"]["params_schema"]["required"] == ["seconds"]


async def test_metrics_are_in_prometheus_format_with_the_executor(client: httpx.AsyncClient) -> None:
    resp = await client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    assert 'bgt_tasks_running{executor="background"} 0.0' in resp.text
    assert "# TYPE bgt_task_end_to_end_seconds histogram" in resp.text
