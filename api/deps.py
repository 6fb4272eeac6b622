"""What a route needs from the app, as `Annotated` dependencies (tests build the app with their own).

They are `async def` on purpose: FastAPI runs a plain `def` dependency in the thread pool, and that hop
cost more than the rest of a `GET /tasks/{id}` (the benchmark's profile, issue 3).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.executors import Executor
from shared.store import StatusStore


async def get_store(request: Request) -> StatusStore:
    store: StatusStore = request.app.state.store
    return store


async def get_executor(request: Request) -> Executor:
    executor: Executor = request.app.state.executor
    return executor


StoreDep = Annotated[StatusStore, Depends(get_store)]
ExecutorDep = Annotated[Executor, Depends(get_executor)]
