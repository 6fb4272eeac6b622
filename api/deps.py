"""What a route needs from the app, as `Annotated` dependencies (tests build the app with their own)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.executors import Executor
from shared.store import StatusStore


def get_store(request: Request) -> StatusStore:
    store: StatusStore = request.app.state.store
    return store


def get_executor(request: Request) -> Executor:
    executor: Executor = request.app.state.executor
    return executor


StoreDep = Annotated[StatusStore, Depends(get_store)]
ExecutorDep = Annotated[Executor, Depends(get_executor)]
