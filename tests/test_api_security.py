"""API keys and ownership, idempotency, body limits and CORS, in-process over the embedded store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fakeredis import FakeAsyncRedis
from fastapi import FastAPI

from api.main import create_app
from shared.settings import Settings
from shared.store import StatusStore

pytestmark = pytest.mark.anyio

ALICE, BOB = {"X-API-Key": "alice-key-0123456789"}, {"X-API-Key": "bob-key-9876543210"}
ClientFactory = Callable[..., httpx.AsyncClient]


def app_with(**overrides: object) -> FastAPI:
    settings = Settings.model_validate({"executor": "background", **overrides})
    return create_app(settings, store=StatusStore(FakeAsyncRedis(), ttl_seconds=600))


@pytest.fixture
async def secured() -> AsyncIterator[httpx.AsyncClient]:
    app = app_with(api_keys=[ALICE["X-API-Key"], BOB["X-API-Key"]])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        yield client


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app_with()), base_url="http://api") as c:
        yield c


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "guess"}, {"X-API-Key": ""}])
async def test_without_a_valid_key_every_task_route_is_a_401(
    secured: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    some_id = "00000000-0000-4000-8000-000000000000"
    routes = [("POST", "/tasks/noop"), ("GET", f"/tasks/{some_id}"), ("GET", "/tasks"), ("DELETE", f"/tasks/{some_id}")]
    routes += [("GET", f"/tasks/{some_id}/events"), ("GET", "/events")]
    for method, path in routes:
        resp = await secured.request(method, path, headers=headers)
        assert resp.status_code == 401, (method, path)
        assert resp.json() == {"detail": "missing or invalid API key (X-API-Key header)"}
    assert (await secured.get("/health")).status_code == 200  # probes need no key


async def test_a_task_is_visible_only_to_the_key_that_created_it(secured: httpx.AsyncClient) -> None:
    # (over ASGITransport the background task has run by the time the POST returns)
    created = await secured.post("/tasks/noop", json={"value": "secret plans"}, headers=ALICE)
    assert created.status_code == 202
    task_id = created.json()["id"]
    assert (await secured.get(f"/tasks/{task_id}", headers=ALICE)).status_code == 200
    for method in ("GET", "DELETE"):
        resp = await secured.request(method, f"/tasks/{task_id}", headers=BOB)
        assert resp.status_code == 404  # not 403: ids cannot be probed
        assert resp.json() == {"detail": f"no task with id {task_id}"}
    assert (await secured.get("/tasks", headers=BOB)).json()["items"] == []
    assert [t["id"] for t in (await secured.get("/tasks", headers=ALICE)).json()["items"]] == [task_id]
    finished = await secured.delete(f"/tasks/{task_id}", headers=ALICE)
    assert finished.status_code == 409  # the owner reaches it; to Bob it does not exist
    record = await secured.get(f"/tasks/{task_id}", headers=ALICE)
    assert "alice-key" not in record.text
    assert "owner" not in record.json()


async def test_the_same_idempotency_key_and_body_return_the_original_task(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "order-17"}
    first = await client.post("/tasks/noop", json={"value": 1}, headers=headers)
    again = await client.post("/tasks/noop", json={"value": 1}, headers=headers)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == first.headers["location"]
    other = await client.post("/tasks/noop", json={"value": 2}, headers=headers)
    assert other.status_code == 409
    assert other.json() == {"detail": "this Idempotency-Key was already used with a different request"}
    other_task = await client.post("/tasks/sleep", json={"seconds": 0}, headers=headers)
    assert other_task.status_code == 409
    assert len((await client.get("/tasks")).json()["items"]) == 1


async def test_concurrent_requests_with_one_key_create_exactly_one_task(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "burst"}
    replies = await asyncio.gather(*(client.post("/tasks/noop", json={}, headers=headers) for _ in range(25)))
    assert sorted(r.status_code for r in replies) == [200] * 24 + [202]
    assert len({r.json()["id"] for r in replies}) == 1
    assert len((await client.get("/tasks")).json()["items"]) == 1


@pytest.mark.parametrize("key", ["", "k" * 201])
async def test_a_malformed_idempotency_key_is_a_422(client: httpx.AsyncClient, key: str) -> None:
    resp = await client.post("/tasks/noop", json={}, headers={"Idempotency-Key": key})
    assert resp.status_code == 422


async def test_a_body_over_the_limit_is_a_413_declared_or_streamed() -> None:
    app = app_with(max_body_bytes=1000)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        big = b'{"value": "' + b"x" * 2000 + b'"}'
        declared = await client.post("/tasks/noop", content=big, headers={"content-type": "application/json"})
        assert declared.status_code == 413
        assert declared.json() == {"detail": "request body larger than 1000 bytes"}

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(big), 100):
                yield big[start : start + 100]

        streamed = await client.post("/tasks/noop", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413
        assert streamed.json() == {"detail": "request body larger than 1000 bytes"}
        small = await client.post("/tasks/noop", json={"value": "fits"})
        assert small.status_code == 202
        assert len((await client.get("/tasks")).json()["items"]) == 1  # nothing stored for the refused ones


async def test_cors_allows_only_the_configured_origins_and_never_credentials() -> None:
    app = app_with(cors_origins=["https://ui.example"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "X-API-Key"}
        ok = await client.options("/tasks/noop", headers={"Origin": "https://ui.example", **preflight})
        assert ok.headers["access-control-allow-origin"] == "https://ui.example"
        assert "access-control-allow-credentials" not in ok.headers
        evil = await client.options("/tasks/noop", headers={"Origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in evil.headers
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app_with()), base_url="http://api") as client:
        plain = await client.get("/health", headers={"Origin": "https://ui.example"})
        assert "access-control-allow-origin" not in plain.headers


async def test_the_api_keys_never_appear_in_the_openapi_document(secured: httpx.AsyncClient) -> None:
    spec = (await secured.get("/openapi.json")).text
    assert "alice-key" not in spec
    assert '"X-API-Key"' in spec  # the scheme is documented, so /docs has an Authorize button
