"""Shared fixtures: a private redis-server for the session, and stores on both fakeredis and real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from fakeredis import FakeAsyncRedis
from redis.asyncio import Redis

from shared.store import StatusStore
from tests.processes import Proc, Procs, start_api, start_redis, start_worker

UNIT_DB = 1  # unit tests flush this database of the private server; the live-process tests use others


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def procs() -> Iterator[Procs]:
    """The processes a test starts, each stopped at teardown, in reverse order."""
    owned = Procs()
    yield owned
    for proc in reversed(owned.started):
        proc.stop(timeout=10)


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


FOLLOW_DB = 3  # the live follow/CLI/dashboard tests (one API per executor and a worker, for the whole session)


@dataclass(frozen=True)
class LiveApi:
    executor: str
    url: str
    proc: Proc


@pytest.fixture(scope="session")
def follow_env(redis_server: Proc) -> dict[str, str]:
    return {"REDIS_URL": f"{redis_server.extra['url']}/{FOLLOW_DB}", "PROGRESS_INTERVAL": "0.2", "LOG_FORMAT": "json"}


@pytest.fixture(scope="session")
def follow_worker(follow_env: dict[str, str]) -> Iterator[Proc]:
    proc = start_worker(follow_env, concurrency=2, hostname="f1@%h")
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def follow_background(follow_env: dict[str, str]) -> Iterator[LiveApi]:
    proc = start_api({**follow_env, "EXECUTOR": "background"})
    yield LiveApi("background", str(proc.extra["url"]), proc)
    proc.stop()


@pytest.fixture(scope="session")
def follow_celery(follow_env: dict[str, str], follow_worker: Proc) -> Iterator[LiveApi]:
    proc = start_api({**follow_env, "EXECUTOR": "celery"})
    yield LiveApi("celery", str(proc.extra["url"]), proc)
    proc.stop()


@pytest.fixture(params=["background", "celery"])
def live_api(request: pytest.FixtureRequest) -> LiveApi:
    """A live API (uvicorn, real Redis) for each executor in turn; the Celery one has a worker."""
    api: LiveApi = request.getfixturevalue(f"follow_{request.param}")
    return api


ALICE, BOB = {"X-API-Key": "alice-live-key"}, {"X-API-Key": "bob-live-key"}


@pytest.fixture(scope="session")
def secured_api() -> Iterator[str]:
    """A live API with authentication on (keys ALICE and BOB), in-process executor, its own Redis."""
    redis = start_redis()
    env = {"REDIS_URL": str(redis.extra["url"]), "EXECUTOR": "background", "API_KEYS": "alice-live-key,bob-live-key"}
    api = start_api(env)
    yield str(api.extra["url"])
    api.stop()
    redis.stop()
