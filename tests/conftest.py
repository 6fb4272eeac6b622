"""Shared fixtures: a private redis-server for the session, and stores on both fakeredis and real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from fakeredis import FakeAsyncRedis
from redis.asyncio import Redis

from shared.store import StatusStore
from tests.processes import Proc, start_redis

UNIT_DB = 1  # unit tests flush this database of the private server; the live-process tests use others


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Proc]:
    proc = start_redis()
    yield proc
    proc.stop()


@pytest.fixture(params=["fakeredis", "redis"])
async def redis_client(request: pytest.FixtureRequest) -> AsyncIterator[Redis]:
    """The same unit test runs on the embedded store and on a real redis-server."""
    if request.param == "fakeredis":
        client: Redis = FakeAsyncRedis()
    else:
        server: Proc = request.getfixturevalue("redis_server")
        client = Redis.from_url(f"{server.extra['url']}/{UNIT_DB}")
        await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
async def store(redis_client: Redis) -> StatusStore:
    return StatusStore(redis_client, ttl_seconds=600)
