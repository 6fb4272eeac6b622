"""The HTTP contract in-process (httpx over ASGI, embedded store): errors, status codes, documents."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fakeredis import FakeAsyncRedis
from fastapi import FastAPI

from api.main import create_app
from shared.settings import Settings
from shared.store import StatusStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def app() -> FastAPI:
    store = StatusStore(FakeAsyncRedis(), ttl_seconds=600)
    return create_app(Settings(executor="background", redis_url=None), store=store)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c:
        yield c


async def finished(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    for _ in range(500):
        body: dict[str, Any] = (await client.get(f"/tasks/{task_id}")).json()
        if body["state"] not in ("queued", "running"):
            return body
        await asyncio.sleep(0.01)
    raise AssertionError(f"task {task_id} did not finish")


async def test_submit_answers_202_with_the_record_and_its_location(client: httpx.AsyncClient) -> None:
    resp = await client.post("/tasks/noop", json={"value": [1, {"a": None}]})
    assert resp.status_code == 202
    body = resp.json()
    assert resp.headers["location"] == f"/tasks/{body['id']}"
    assert body["state"] in ("queued", "running", "succeeded")
    assert body["executor"] == "background"
    done = await finished(client, body["id"])
    assert done["state"] == "succeeded"
    assert done["result"] == {"value": [1, {"a": None}]}


async def test_noop_needs_no_body(client: httpx.AsyncClient) -> None:
    resp = await client.post("/tasks/noop")
    assert resp.status_code == 202
    assert resp.json()["params"] == {"value": None}


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/tasks/unknown", {}, 404),
        ("/tasks/sleep", {"seconds": "soon"}, 422),
        ("/tasks/sleep", {"seconds": -1}, 422),
        ("/tasks/sleep", {"seconds": 3601}, 422),
        ("/tasks/sleep", {}, 422),
        ("/tasks/cpu", {"rounds": 0}, 422),
        ("/tasks/cpu", {"rounds": 100_000_001}, 422),
        ("/tasks/cpu", {"rounds": 1.5}, 422),
        ("/tasks/fail", {"message": 3}, 422),
    ],
)
async def test_bad_submissions_get_a_json_error(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], status: int
) -> None:
    resp = await client.post(path, json=body)
    assert resp.status_code == status
    assert resp.headers["content-type"] == "application/json"
    assert "detail" in resp.json()


async def test_malformed_json_is_a_422(client: httpx.AsyncClient) -> None:
    resp = await client.post("/tasks/sleep", content=b'{"seconds": ', headers={"content-type": "application/json"})
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["type"] == "json_invalid"


async def test_nothing_is_stored_for_a_refused_submission(client: httpx.AsyncClient, app: FastAPI) -> None:
    await client.post("/tasks/sleep", json={"seconds": -1})
    assert (await client.get("/tasks")).json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_an_unknown_id_is_a_404(client: httpx.AsyncClient, method: str) -> None:
    resp = await client.request(method, "/tasks/00000000-0000-4000-8000-000000000000")
    assert resp.status_code == 404
    assert resp.json() == {"detail": "no task with id 00000000-0000-4000-8000-000000000000"}


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=501", "limit=x", "state=sleeping", "cursor=not-a-cursor", "cursor=YWJjOmRlZg=="]
)
async def test_bad_list_queries_are_a_422(client: httpx.AsyncClient, query: str) -> None:
    resp = await client.get(f"/tasks?{query}")
    assert resp.status_code == 422
    assert "detail" in resp.json()


async def test_listing_pages_and_filters(client: httpx.AsyncClient) -> None:
    ids = [(await client.post("/tasks/noop", json={"value": i})).json()["id"] for i in range(5)]
    failed = (await client.post("/tasks/fail", json={"message": "x"})).json()["id"]
    for task_id in [*ids, failed]:
        await finished(client, task_id)
    page = (await client.get("/tasks?limit=4")).json()
    assert [item["id"] for item in page["items"]] == [failed, *reversed(ids)][:4]
    rest = (await client.get("/tasks", params={"limit": 4, "cursor": page["next_cursor"]})).json()
    assert [item["id"] for item in rest["items"]] == list(reversed(ids))[3:]
    assert rest["next_cursor"] is None
    only_failed = (await client.get("/tasks?state=failed")).json()
    assert [item["id"] for item in only_failed["items"]] == [failed]
    only_noop = (await client.get("/tasks?name=noop&state=succeeded")).json()
    assert {item["id"] for item in only_noop["items"]} == set(ids)


async def test_cancelling_a_finished_task_is_a_409(client: httpx.AsyncClient) -> None:
    task_id = (await client.post("/tasks/noop")).json()["id"]
    await finished(client, task_id)
    resp = await client.delete(f"/tasks/{task_id}")
    assert resp.status_code == 409
    assert resp.json() == {"detail": f"task {task_id} already finished (succeeded)"}


async def test_health_names_the_executor_and_redis(client: httpx.AsyncClient) -> None:
    resp = await client.get("/health")
    assert resp.json() == {
        "status": "ok",
        "executor": "background",
        "redis": True,
        "store_full": False,
        "queues_without_consumer": [],
    }


async def test_openapi_documents_one_route_per_task_with_its_schema(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    for name in ("noop", "sleep", "cpu", "fail"):
        operation = spec["paths"][f"/tasks/{name}"]["post"]
        assert "202" in operation["responses"]
        schema_ref = operation["requestBody"]["content"]["application/json"]["schema"]
        assert schema_ref
    sleep_schema = spec["components"]["schemas"]["SleepParams"]["properties"]["seconds"]
    assert (sleep_schema["minimum"], sleep_schema["maximum"]) == (0, 3600)
    assert spec["components"]["schemas"]["CpuParams"]["properties"]["rounds"]["maximum"] == 100_000_000
    record_schema = spec["components"]["schemas"]["TaskRecord"]
    assert "state" in record_schema["required"]
    assert set(json.loads(json.dumps(spec["paths"]["/tasks/{task_id}"]["delete"]["responses"]))) >= {
        "200",
        "202",
        "404",
        "409",
    }


async def test_openapi_describes_the_streams_the_metrics_and_task_ids(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "TaskRecord" in spec["components"]["schemas"]
    for path in ("/tasks/{task_id}/events", "/events"):
        stream = spec["paths"][path]["get"]["responses"]["200"]["content"]["text/event-stream"]
        assert stream["schema"]["type"] == "string"
        assert stream["x-event-data"] == {"$ref": "#/components/schemas/TaskRecord"}
    metrics = spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert metrics == {"text/plain": {"schema": {"type": "string"}}}
    for path, method in (
        ("/tasks/{task_id}", "get"),
        ("/tasks/{task_id}", "delete"),
        ("/tasks/{task_id}/events", "get"),
    ):
        operation = spec["paths"][path][method]
        (param,) = [p for p in operation["parameters"] if p["name"] == "task_id"]
        assert param["schema"]["format"] == "uuid"
        assert "422" in operation["responses"]
