"""`POST /tasks/{name}`: one documented route per registered task, so /docs shows each task's schema.

No `from __future__ import annotations` here: the endpoints are built at run time, and FastAPI must see
each task's real parameter model in the signature.
"""

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import uuid4

from fastapi import APIRouter, BackgroundTasks, Body, HTTPException, Response

from api.deps import ExecutorDep, SettingsDep, StoreDep, retry_after
from api.errors import ErrorBody
from shared.logs import current_task_id
from shared.record import TaskRecord
from shared.tasks import TaskRegistry, TaskSpec

log = logging.getLogger(__name__)


def submit_router(registry: TaskRegistry) -> APIRouter:
    router = APIRouter(prefix="/tasks", tags=["submit"])
    for spec in registry:
        router.add_api_route(
            f"/{spec.name}",
            _submit_endpoint(spec),
            methods=["POST"],
            status_code=202,
            name=f"submit_{spec.name}",
            summary=f"Start `{spec.name}`",
            description=(spec.fn.__doc__ or "").strip(),
            response_class=Response,
            responses={202: {"model": TaskRecord, "description": "Queued; follow it at `Location`"}},
        )
    router.add_api_route(
        "/{name}", _unknown_task, methods=["POST"], include_in_schema=False, responses={404: {"model": ErrorBody}}
    )
    return router


def _submit_endpoint(spec: TaskSpec) -> Callable[..., Awaitable[Response]]:
    model = spec.params_model
    required = any(field.is_required() for field in model.model_fields.values())

    async def submit(
        store: StoreDep,
        executor: ExecutorDep,
        settings: SettingsDep,
        background: BackgroundTasks,
        params: model = Body(... if required else None),  # type: ignore[valid-type]
    ) -> Response:
        params_json = (params if params is not None else model()).model_dump_json()
        task_id = str(uuid4())
        current_task_id.set(task_id)  # log lines from here on, and the in-process run, name the task
        raw = await store.create(task_id, spec.name, params_json, executor.name)
        try:
            await executor.dispatch(task_id, spec.name, params_json, background)
        except Exception as exc:
            log.exception("task %s could not be dispatched", task_id)
            await store.finish(task_id, "failed", error=f"DispatchError: {type(exc).__name__}: {exc}")
            raise HTTPException(503, "the task could not be handed to its executor; try again") from None
        headers = {"Location": f"/tasks/{task_id}", "Retry-After": retry_after(settings)}
        return Response(raw, status_code=202, media_type="application/json", headers=headers)

    return submit


async def _unknown_task(name: str) -> Any:
    raise HTTPException(404, f"no task named {name!r}")
