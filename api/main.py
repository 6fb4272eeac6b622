"""`uvicorn api.main:app`: with no configuration at all this is the whole service, in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from redis.exceptions import RedisError

from api.deps import ExecutorDep, MetricsDep, StoreDep, retry_after
from api.errors import install_error_handlers
from api.executors import make_executor, make_requeuer
from api.hub import EventHub
from api.limits import BodySizeLimit
from api.metrics import Metrics
from api.routes_events import router as events_router
from api.routes_submit import submit_router
from api.routes_tasks import router as tasks_router
from api.routes_ui import ui_router
from shared.connection import make_runner, make_sweeper, open_store, process_name
from shared.logs import configure_logging
from shared.settings import Settings, get_settings
from shared.store import StatusStore
from shared.tasks import TaskRegistry, registry

log = logging.getLogger(__name__)

# After uvicorn's graceful-shutdown timeout cancels unfinished in-process tasks, they still get this long
# to record that they were lost before the Redis connection closes.
_DRAIN_SECONDS = 5.0


class Health(BaseModel):
    status: str
    executor: str
    redis: bool


def create_app(
    settings: Settings | None = None, store: StatusStore | None = None, tasks: TaskRegistry | None = None
) -> FastAPI:
    settings = settings or get_settings()
    tasks = tasks or registry.load(settings.task_modules)
    store = store or open_store(settings)
    runner = make_runner(settings, store, tasks, worker=process_name())
    executor = make_executor(settings, runner)
    sweeper = make_sweeper(settings, store, make_requeuer(settings, executor, runner))
    configure_logging(settings)
    metrics = Metrics(settings.executor)
    hub = EventHub(store.redis, on_event=metrics.observe, on_error=lambda: metrics.redis_error("events"))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sweeping = asyncio.create_task(sweeper.run_forever())
        try:
            await hub.start()  # metrics count from now; waiters would start it anyway
        except RedisError as exc:
            log.warning("event stream not followed yet, Redis unavailable: %s", type(exc).__name__)
        yield
        sweeping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeping
        await runner.drain(_DRAIN_SECONDS)
        await hub.close()
        await store.redis.aclose()
        await executor.aclose()

    app = FastAPI(title="Background tasks", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.store = store
    app.state.executor = executor
    app.state.runner = runner
    app.state.hub = hub
    app.state.metrics = metrics
    app.state.retry_after = retry_after(settings)  # the same for every answer: computed once
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        # Keys travel in a header, never in cookies, so credentials are never allowed (and `*` stays safe).
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=False,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Content-Type", "X-API-Key", "Idempotency-Key", "If-None-Match", "Last-Event-ID"],
            expose_headers=["Location", "ETag", "Retry-After"],
        )
    app.include_router(events_router)
    app.include_router(submit_router(tasks))
    app.include_router(tasks_router)
    app.include_router(ui_router(tasks))

    @app.get("/health", tags=["service"])
    async def health(store: StoreDep, executor: ExecutorDep) -> Health:
        """Liveness plus whether Redis answers (within a second); open without an API key."""
        try:
            redis_ok = await asyncio.wait_for(store.ping(), timeout=1.0)
        except (RedisError, TimeoutError, OSError):
            redis_ok = False
        return Health(status="ok" if redis_ok else "degraded", executor=executor.name, redis=redis_ok)

    @app.get("/metrics", tags=["service"], response_class=Response)
    async def prometheus_metrics(metrics: MetricsDep) -> Response:
        """Prometheus text format: tasks by state, queue wait, run and end-to-end times, Redis errors."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return app


app = create_app()
