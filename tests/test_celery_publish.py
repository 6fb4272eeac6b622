"""The Celery executor publishes with the API's asyncio Redis client exactly what Celery's `send_task` would.

The live tests prove a real worker runs what it publishes; this one compares the messages byte for byte
(apart from what is new in every message: the task id and kombu's delivery tag).
"""

from __future__ import annotations

import base64
import json
from typing import Any
from uuid import uuid4

import pytest
from fastapi import BackgroundTasks
from redis.asyncio import Redis

from api.executors import CeleryExecutor, make_executor
from shared.connection import make_runner, open_store
from shared.settings import Settings
from shared.tasks import registry
from tests.processes import Proc

pytestmark = pytest.mark.anyio

PUBLISH_DB = 3


def _normalized(raw: bytes | str, task_id: str) -> dict[str, Any]:
    message = json.loads(raw)
    assert message["properties"].pop("delivery_tag")
    assert message["properties"].pop("correlation_id") == task_id
    assert message["headers"].pop("id") == task_id
    assert message["headers"].pop("root_id") == task_id
    message["body"] = json.loads(base64.b64decode(message["body"]))
    return dict(message)


async def test_the_executor_publishes_what_send_task_publishes(redis_server: Proc) -> None:
    url = f"{redis_server.extra['url']}/{PUBLISH_DB}"
    raw_redis = Redis.from_url(url)
    await raw_redis.flushdb()
    settings = Settings(executor="celery", redis_url=url)
    store = open_store(settings)
    executor = make_executor(settings, make_runner(settings, store, registry.load(settings.task_modules), worker="t"))
    assert isinstance(executor, CeleryExecutor)
    assert executor.broker is not None  # the asyncio path, not send_task in a thread
    try:
        ours, theirs = str(uuid4()), str(uuid4())
        params = json.dumps({"value": {"nested": [1, "two", None]}})
        await executor.dispatch(ours, "noop", params, BackgroundTasks())
        executor.app.send_task("noop", args=[params], task_id=theirs)  # Celery's own path, blocking
        queued = await raw_redis.lrange("celery", 0, -1)  # LPUSH: the newest first
        assert len(queued) == 2
        assert _normalized(queued[1], ours) == _normalized(queued[0], theirs)
        assert _normalized(queued[1], ours)["body"] == [
            [params],
            {},
            {"callbacks": None, "errbacks": None, "chain": None, "chord": None},
        ]
    finally:
        await executor.aclose()
        await store.redis.aclose()
        await raw_redis.flushdb()
        await raw_redis.aclose()
