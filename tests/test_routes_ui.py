"""The dashboard's files and their security headers, in-process (httpx over ASGI, embedded store): no browser."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fakeredis import FakeAsyncRedis
from fastapi import FastAPI

from api.main import create_app
from api.routes_ui import CSP, SECURITY_HEADERS
from shared.settings import Settings
from shared.store import StatusStore

pytestmark = pytest.mark.anyio

PAGE_AND_ASSETS = [
    ("/", "text/html"),
    ("/static/dashboard.js", "text/javascript"),
    ("/static/dashboard.css", "text/css"),
]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(
        Settings(executor="background", redis_url=None), store=StatusStore(FakeAsyncRedis(), ttl_seconds=600)
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c:
        yield c
    await app.state.hub.close()


@pytest.mark.parametrize(("path", "media_type"), PAGE_AND_ASSETS)
async def test_the_page_and_its_assets_carry_the_security_headers(
    client: httpx.AsyncClient, path: str, media_type: str
) -> None:
    resp = await client.get(path)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith(media_type)
    for name, value in SECURITY_HEADERS.items():
        assert resp.headers[name] == value
    assert "frame-ancestors 'none'" in CSP
    assert "unsafe-inline" not in CSP
    assert "unsafe-eval" not in CSP


async def test_the_page_has_nothing_inline_and_loads_nothing_from_elsewhere(client: httpx.AsyncClient) -> None:
    page = (await client.get("/")).text
    assert '<script src="/static/dashboard.js" defer></script>' in page
    assert '<link rel="stylesheet" href="/static/dashboard.css">' in page
    assert re.findall(r"<script(?![^>]*\bsrc=)", page) == []  # every script is a file
    assert "<style" not in page
    assert re.search(r"\sstyle=", page) is None
    assert re.search(r"\son[a-z]+=", page) is None  # no inline event handlers
    for path, _ in PAGE_AND_ASSETS:  # works offline: no CDN, no font service (the SVG namespace is a name)
        text = (await client.get(path)).text
        assert set(re.findall(r"https?://[^\s\"'`)]+", text)) <= {"http://www.w3.org/2000/svg"}, path
    script = (await client.get("/static/dashboard.js")).text
    assert re.search(r"\beval\(|new Function\(|\.innerHTML\b|setAttribute\(\"style\"|\bstyle:", script) is None


async def test_only_the_dashboards_own_files_are_served(client: httpx.AsyncClient) -> None:
    for name in ("__init__.py", "routes_ui.py", "dashboard.html", "..%2Fmain.py", "nope.js"):
        assert (await client.get(f"/static/{name}")).status_code == 404, name


async def test_the_json_routes_do_without_them(client: httpx.AsyncClient) -> None:
    """The headers are set by the dashboard's routes, not by a middleware every API request would pay for."""
    created = await client.post("/tasks/noop", json={})
    answers = [created, await client.get(f"/tasks/{created.json()['id']}"), await client.get("/health")]
    answers += [await client.get("/catalog"), await client.get("/overview")]
    for resp in answers:
        assert resp.status_code in (200, 202), resp.text
        assert "content-security-policy" not in resp.headers
        assert "x-frame-options" not in resp.headers
