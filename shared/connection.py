"""Build the status store, runner and sweeper from settings: real Redis when REDIS_URL is set, else in memory."""

from __future__ import annotations

import os
import socket

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError

from shared.runner import Runner
from shared.settings import Settings
from shared.store import StatusStore
from shared.sweeper import Requeuer, Sweeper
from shared.tasks import TaskRegistry


def redis_client(url: str, settings: Settings) -> Redis:
    """A client that answers within REDIS_TIMEOUT and, after Redis restarts, reconnects on the next command
    (its pooled connections are dead then; two quick retries replace them instead of failing a request).
    No `health_check_interval`: the retries do that job, without a check on every command's hot path."""
    return Redis.from_url(
        url,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
        retry_on_error=[ConnectionError, TimeoutError],
    )


def open_redis(settings: Settings) -> Redis:
    if settings.redis_url:
        return redis_client(settings.redis_url, settings)
    import fakeredis  # the embedded dev mode only; imported late so production never needs it

    return fakeredis.FakeAsyncRedis()


def open_store(settings: Settings) -> StatusStore:
    return StatusStore(
        open_redis(settings),
        ttl_seconds=settings.result_ttl_seconds,
        lease_seconds=settings.lease_seconds,
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
        time_limit=settings.task_time_limit,
    )


def make_sweeper(settings: Settings, store: StatusStore, requeue: Requeuer | None) -> Sweeper:
    return Sweeper(store, requeue, interval=settings.sweep_interval)
