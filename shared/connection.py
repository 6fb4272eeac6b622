"""Build the status store and runner from settings: real Redis when REDIS_URL is set, else in memory."""

from __future__ import annotations

import os
import socket

from redis.asyncio import Redis

from shared.runner import Runner
from shared.settings import Settings
from shared.store import StatusStore
from shared.tasks import TaskRegistry


def open_redis(settings: Settings) -> Redis:
    if settings.redis_url:
        return Redis.from_url(settings.redis_url, health_check_interval=30)
    import fakeredis  # the embedded dev mode only; imported late so production never needs it

    return fakeredis.FakeAsyncRedis()


def open_store(settings: Settings) -> StatusStore:
    return StatusStore(
        open_redis(settings),
        ttl_seconds=settings.result_ttl_seconds,
        task_events_maxlen=settings.task_events_maxlen,
        events_maxlen=settings.events_maxlen,
    )


def process_name(prefix: str | None = None) -> str:
    """Who runs a task, as the record's `worker` field shows it: host (or Celery node name) and pid."""
    return f"{prefix or socket.gethostname()}:{os.getpid()}"


def make_runner(settings: Settings, store: StatusStore, registry: TaskRegistry, *, worker: str) -> Runner:
    return Runner(
        store,
        registry,
        worker=worker,
        progress_interval=settings.progress_interval,
        heartbeat_interval=settings.heartbeat_interval,
    )
