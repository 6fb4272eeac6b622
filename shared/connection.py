"""Build the store, runner, keeper and sweeper from settings: real Redis when REDIS_URL is set, else in memory."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError

from shared.clock import RedisClock
from shared.keeper import LeaseKeeper
from shared.keys import Keyspace
from shared.presence import Presence, ProcessInfo
from shared.redis_urls import SentinelUrl, is_sentinel
from shared.runner import Runner
from shared.settings import Settings
from shared.store import StatusStore
from shared.sweeper import Requeuer, Sweeper
from shared.tasks import TaskRegistry

ClientFactory = Callable[[], Any]


def redis_client(url: str, settings: Settings) -> Redis:
    """A client that answers within REDIS_TIMEOUT and, after Redis restarts, reconnects on the next command
    (its pooled connections are dead then; two quick retries replace them instead of failing a request).

    A burst of requests waits for a free connection (up to REDIS_MAX_CONNECTIONS, at most REDIS_TIMEOUT)
    instead of failing while Redis is healthy. No `health_check_interval`: the retries do that job, without
    a check on every command's hot path."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_timeout,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
        retry_on_error=[ConnectionError, TimeoutError],
    )
    return Redis.from_pool(pool)  # closing the client closes its pool


def cluster_client(url: str, settings: Settings) -> Any:
    """A Redis Cluster client from any node's URL: it learns the slots, and follows them when they move."""
    from redis.asyncio.cluster import RedisCluster

    return RedisCluster.from_url(
        url,
        max_connections=settings.redis_max_connections,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
    )


def sentinel_client(url: str, settings: Settings) -> Redis:
    """The master a set of Sentinels names: after a failover the client asks them again and follows."""
    from redis.asyncio.sentinel import Sentinel

    parsed = SentinelUrl.parse(url)
    timeouts = {"socket_timeout": settings.redis_timeout, "socket_connect_timeout": settings.redis_timeout}
    sentinel = Sentinel(parsed.sentinels, sentinel_kwargs=timeouts, **timeouts)  # type: ignore[no-untyped-call]
    client: Redis = sentinel.master_for(
        parsed.master,
        db=parsed.db,
        username=parsed.username,
        password=parsed.password,
        ssl=parsed.ssl,
        max_connections=settings.redis_max_connections,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
        retry_on_error=[ConnectionError, TimeoutError],
    )
    return client


def client_factory(settings: Settings) -> ClientFactory:
    """Makes clients of the store's Redis: the API's, and one for the lease keeper's thread."""
    if settings.redis_url:
        url = settings.redis_url
        if settings.redis_cluster:
            return lambda: cluster_client(url, settings)
        if is_sentinel(url):
            return lambda: sentinel_client(url, settings)
        return lambda: redis_client(url, settings)
    import fakeredis  # the embedded dev mode only; imported late so production never needs it

    server = fakeredis.FakeServer()  # every client of this process shares the one in-memory store
    return lambda: fakeredis.FakeAsyncRedis(server=server)


def clone_client(redis: Any) -> Any:
    """Another client of the same Redis (or the same in-memory store), with its own connections."""
    pool = redis.connection_pool
    kwargs = dict(pool.connection_kwargs)
    return type(redis).from_pool(type(pool)(connection_class=pool.connection_class, **kwargs))


def open_store(settings: Settings, client: Any = None) -> StatusStore:
    return StatusStore(
        client if client is not None else client_factory(settings)(),
        ttl_seconds=settings.result_ttl_seconds,
        lease_seconds=settings.lease_seconds,
        events_maxlen=settings.events_maxlen,
        keys=Keyspace(settings.partitions),
        clock=RedisClock(),
        register_every=min(60.0, max(1.0, settings.sweep_interval * 6)),
    )


def sibling_store(store: StatusStore, client: Any) -> StatusStore:
    """A store like `store` on another client (for another thread's event loop)."""
    return StatusStore(
        client,
        ttl_seconds=store.ttl_seconds,
        lease_seconds=store.lease_seconds,
        events_maxlen=store.events_maxlen,
        keys=store.keys,
        clock=RedisClock(),
        register_every=store.register_every,
    )


def process_name(prefix: str | None = None) -> str:
    """Who runs a task, as the record's `worker` field shows it: host (or Celery node name) and pid."""
    return f"{prefix or socket.gethostname()}:{os.getpid()}"


def make_keeper(
    store: StatusStore, *, worker: str, interval: float, heartbeat_interval: float, clients: ClientFactory | None = None
) -> LeaseKeeper:
    make_client = clients or (lambda: clone_client(store.redis))
    return LeaseKeeper(
        lambda: sibling_store(store, make_client()),
        worker=worker,
        interval=interval,
        heartbeat_interval=heartbeat_interval,
    )


def make_runner(
    settings: Settings,
    store: StatusStore,
    registry: TaskRegistry,
    *,
    worker: str,
    optimistic: str,
    clients: ClientFactory | None = None,
) -> Runner:
    keeper = make_keeper(
        store,
        worker=worker,
        interval=settings.progress_interval,
        heartbeat_interval=settings.heartbeat_interval,
        clients=clients,
    )
    return Runner(
        store,
        registry,
        worker=worker,
        keeper=keeper,
        time_limit=settings.task_time_limit,
        max_result_bytes=settings.max_result_bytes,
        optimistic=optimistic,
    )


def make_sweeper(
    settings: Settings, store: StatusStore, requeue: Requeuer | None, describe: Callable[[], ProcessInfo] | None = None
) -> Sweeper:
    return Sweeper(
        store,
        requeue,
        interval=settings.sweep_interval,
        events_age=settings.events_age,
        presence=Presence(store, describe) if describe else None,
        resend_after=settings.celery_resend_after,
    )
