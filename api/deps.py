"""What a route needs from the app, as `Annotated` dependencies (tests build the app with their own).

They are `async def` on purpose: FastAPI runs a plain `def` dependency in the thread pool, and that hop
cost more than the rest of a `GET /tasks/{id}` (the benchmark's profile, issue 3).
"""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import Depends, Request

from api.executors import Executor
from api.hub import EventHub
from api.metrics import Metrics
from shared.logs import current_task_id
from shared.settings import Settings
from shared.store import StatusStore


async def get_store(request: Request) -> StatusStore:
    store: StatusStore = request.app.state.store
    return store


async def get_executor(request: Request) -> Executor:
    executor: Executor = request.app.state.executor
    return executor


async def get_hub(request: Request) -> EventHub:
    hub: EventHub = request.app.state.hub
    return hub


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


async def bind_task_id(request: Request) -> None:
    """Log lines written while handling a request about one task name it (async: runs in the request's task)."""
    task_id = request.path_params.get("task_id")
    if isinstance(task_id, str):
        current_task_id.set(task_id)


def retry_after(settings: Settings) -> str:
    """Seconds a poller should wait: a record changes at most once a progress interval."""
    return str(max(1, math.ceil(settings.progress_interval)))


StoreDep = Annotated[StatusStore, Depends(get_store)]
ExecutorDep = Annotated[Executor, Depends(get_executor)]
HubDep = Annotated[EventHub, Depends(get_hub)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
