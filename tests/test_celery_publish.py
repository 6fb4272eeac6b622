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

from api.executors import CeleryExecutor, make_executors, message_kwargs
from shared.connection import make_runner, open_store
from shared.routing import resolve
from shared.settings import Settings
from shared.store import StatusStore
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


async def _submit(executor: CeleryExecutor, store: StatusStore, task_id: str, params: str) -> None:
    """What the submit route does: the executor's plan, the record (with the message when inline), dispatch."""
    plan = await executor.plan(task_id, "noop", params, "owner-hash")
    await store.create(task_id, "noop", params, "celery", owner="owner-hash", lease=plan.lease, publish=plan.publish)
    await executor.dispatch(task_id, "noop", params, "owner-hash", plan, BackgroundTasks())


@pytest.mark.parametrize("broker", ["the store's redis", "another redis"])
async def test_the_executor_publishes_what_send_task_publishes(redis_server: Proc, broker: str) -> None:
    url = f"{redis_server.extra['url']}/{PUBLISH_DB}"
    broker_url = url if broker == "the store's redis" else f"{redis_server.extra['url']}/{PUBLISH_DB + 1}"
    raw_redis = Redis.from_url(broker_url)
    await raw_redis.flushdb()
    settings = Settings(executor="celery", redis_url=url, celery_broker_url=broker_url)
    store = open_store(settings)
    tasks = registry.load(settings.task_modules)
    runner = make_runner(settings, store, tasks, worker="t", optimistic="never")
    executor = make_executors(settings, runner, resolve(settings, tasks))["celery"]
    assert isinstance(executor, CeleryExecutor)
    # Same Redis: the store's create script sends it; another Redis: the asyncio client. Never a thread.
    assert executor.inline == (broker == "the store's redis")
    assert executor.inline or executor.broker is not None
    try:
        ours, theirs = str(uuid4()), str(uuid4())
        params = json.dumps({"value": {"nested": [1, "two", None]}})
        await _submit(executor, store, ours, params)
        kwargs = message_kwargs("owner-hash")
        executor.app.send_task("noop", args=[params], kwargs=kwargs, task_id=theirs)  # Celery's own path
        queued = await raw_redis.lrange("celery", 0, -1)  # LPUSH: the newest first
        assert len(queued) == 2
        assert _normalized(queued[1], ours) == _normalized(queued[0], theirs)
        assert _normalized(queued[1], ours)["body"] == [
            [params],
            {"owner": "owner-hash"},
            {"callbacks": None, "errbacks": None, "chain": None, "chord": None},
        ]
        # Sent: nothing leases it any more (a message never confirmed sent would be sent again by a sweeper).
        assert await store.redis.zcard(store.keys.leases(0)) == 0
    finally:
        await executor.aclose()
        await store.redis.aclose()
        await raw_redis.flushdb()
        await raw_redis.aclose()
