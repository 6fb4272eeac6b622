"""Build the status store and runner from settings: real Redis when REDIS_URL is set, else in memory."""

from __future__ import annotations

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
    return StatusStore(open_redis(settings), ttl_seconds=settings.result_ttl_seconds)


def make_runner(settings: Settings, store: StatusStore, registry: TaskRegistry) -> Runner:
    return Runner(
        store,
        registry,
        progress_interval=settings.progress_interval,
        heartbeat_interval=settings.heartbeat_interval,
    )
