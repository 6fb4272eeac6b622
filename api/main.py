"""`uvicorn api.main:app`: with no configuration at all this is the whole service, in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from api.auth import check_metrics_token
from api.deps import ExecutorDep, MetricsDep, StoreDep, retry_after
from api.errors import ErrorBody, install_error_handlers
from api.executors import make_executors, make_requeuer
from api.hub import EventHub
from api.limits import BodySizeLimit
from api.memory import MemoryGuard
from api.metrics import Metrics
from api.openapi import install_openapi
from api.overview import QueueWatch
from api.overview import router as overview_router
from api.routes_events import router as events_router
from api.routes_submit import submit_router
from api.routes_tasks import router as tasks_router
from api.routes_ui import ui_router
from api.serving import DRAIN_SECONDS
from shared.connection import client_factory, make_runner, make_sweeper, open_store, process_name
from shared.logs import configure_logging
from shared.presence import ProcessInfo
from shared.routing import RoutingError, resolve
from shared.settings import Settings, get_settings
from shared.store import STORE_ERRORS, UNREACHABLE, StatusStore
from shared.tasks import TaskRegistry, registry

log = logging.getLogger(__name__)


class Health(BaseModel):
    status: str  # "ok", or "degraded" while Redis is unreachable or full
    executor: str
    redis: bool
    store_full: bool  # new tasks are refused (507) until Redis has memory to spare
    queues_without_consumer: list[str] = []  # Celery queues tasks are routed to that no live worker consumes


class Readiness(BaseModel):
    ready: bool
    redis: bool
    broker: bool | None  # None: no broker to reach (in-process executor)


def create_app(
    settings: Settings | None = None, store: StatusStore | None = None, tasks: TaskRegistry | None = None
) -> FastAPI:
    settings = settings or get_settings()
    tasks = tasks or registry.load(settings.task_modules)
    clients = client_factory(settings) if store is None else None
    store = store or open_store(settings, clients() if clients else None)
    runner = make_runner(settings, store, tasks, worker=process_name(), optimistic="always", clients=clients)
    try:
        routes = resolve(settings, tasks)
    except RoutingError as exc:
        raise SystemExit(f"configuration error: {exc}") from None
    executors = make_executors(settings, runner, routes)
    executor = executors[settings.executor]
    runs_here = ["background"] if any(route.executor == "background" for route in routes.values()) else []

    def describe() -> ProcessInfo:
        return ProcessInfo(runner.worker, "api", runs_here, [], len(runner.running), settings.sweep_interval)

    sweeper = make_sweeper(settings, store, make_requeuer(settings, executors, runner), describe)
    configure_logging(settings)
    metrics = Metrics(settings.executor)
    hub = EventHub(store, separate_readers=settings.redis_cluster, on_error=lambda: metrics.redis_error("events"))
    memory = MemoryGuard(store.redis, limit=settings.redis_memory_limit, reserve=3 * settings.max_body_bytes)
    queued_on: dict[str, list[str]] = {}
    for name, route in routes.items():
        if route.executor == "celery":
            queued_on.setdefault(route.queue, []).append(name)
    queues = QueueWatch(store, executors.get("celery"), queued_on, every=settings.sweep_interval)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sweeping = asyncio.create_task(sweeper.run_forever())
        watching = asyncio.create_task(memory.run_forever())
        looking = asyncio.create_task(queues.run_forever())
        try:
            await metrics.start(store.redis, store.keys)  # count from now on
        except STORE_ERRORS as exc:
            log.warning("metrics count from the first scrape, Redis unavailable: %s", type(exc).__name__)
        yield
        for job in (sweeping, watching, looking):
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job
        await runner.drain(DRAIN_SECONDS)
        runner.keeper.stop()
        await hub.close()
        await store.redis.aclose()
        for each in executors.values():
            await each.aclose()

    app = FastAPI(title="Background tasks", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.store = store
    app.state.executor = executor  # the default one
    app.state.executors = executors
    app.state.routes = {name: executors[route.executor] for name, route in routes.items()}
    app.state.runner = runner
    app.state.hub = hub
    app.state.metrics = metrics
    app.state.memory = memory
    app.state.queues = queues
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
    app.include_router(submit_router(tasks, routes))
    app.include_router(tasks_router)
    app.include_router(ui_router(tasks, routes))
    app.include_router(overview_router)
    install_openapi(app, tasks)

    @app.get("/health", tags=["service"])
    async def health(store: StoreDep, executor: ExecutorDep) -> Health:
        """Liveness plus whether Redis answers (within a second); open without an API key."""
        try:
            redis_ok = await asyncio.wait_for(store.ping(), timeout=1.0)
        except UNREACHABLE:
            redis_ok = False
        healthy = redis_ok and not memory.full
        return Health(
            status="ok" if healthy else "degraded",
            executor=executor.name,
            redis=redis_ok,
            store_full=memory.full,
            queues_without_consumer=queues.without_consumer,
        )

    @app.get("/ready", tags=["service"], responses={503: {"model": Readiness, "description": "Not ready"}})
    async def ready(store: StoreDep) -> JSONResponse:
        """Readiness: 200 once Redis (and, with Celery, the broker) can be reached, 503 while not. Open
        without an API key; use it for load balancers and orchestrators, and `/health` for liveness."""
        redis_ok = await _answers(store.ping())
        celery = executors.get("celery")
        broker_ok = await _answers(celery.ready()) if celery is not None else None
        body = Readiness(ready=redis_ok and broker_ok is not False, redis=redis_ok, broker=broker_ok)
        return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)

    @app.get(
        "/metrics",
        tags=["service"],
        response_class=Response,
        responses={
            200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format"},
            401: {"model": ErrorBody, "description": "METRICS_TOKEN is set and the bearer token is missing or wrong"},
        },
    )
    async def prometheus_metrics(request: Request, metrics: MetricsDep, store: StoreDep) -> Response:
        """Prometheus text format: tasks by state, queue wait, run and end-to-end times, Redis errors. With
        METRICS_TOKEN set, it needs `Authorization: Bearer <token>` (Prometheus' `authorization` setting)."""
        check_metrics_token(request, settings.metrics_token)
        await metrics.catch_up(store.redis, store.keys)
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return app


async def _answers(check: Awaitable[bool], within: float = 1.0) -> bool:
    try:
        return bool(await asyncio.wait_for(check, timeout=within))
    except UNREACHABLE:
        return False


app = create_app()
