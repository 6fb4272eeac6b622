"""Reading, listing and cancelling task runs: the part of the API that is the same for every task."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from api.auth import SECURED, OwnerDep, owner_from
from api.deps import StoreDep, bind_task_id
from api.errors import STORE_RESPONSES, ErrorBody, invalid
from api.executors import Executor
from api.hub import EventHub
from api.polling import parse_etags, record_response, wait_for_change
from shared.listing import Cursor, list_page
from shared.logs import current_task_id
from shared.record import TaskRecord, TaskState
from shared.store import CancelOutcome, StatusStore

_COMMON: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or invalid API key"},
    **STORE_RESPONSES,
}
router = APIRouter(prefix="/tasks", tags=["tasks"], responses=_COMMON)
bound = [Depends(bind_task_id)]  # log lines about a request for one task name it

_JSON = "application/json"
TaskIdPath = Annotated[UUID, Path(description="The task's id (a UUID, as `POST` answered it)")]


class TaskPage(BaseModel):
    items: list[TaskRecord]
    next_cursor: str | None


def task_id_of(text: str) -> str:
    """A task id in its canonical form, or the 422 FastAPI would answer for a UUID path parameter."""
    try:
        return str(UUID(text))
    except ValueError:
        message = "Input should be a valid UUID"
        raise RequestValidationError(
            [{"type": "uuid_parsing", "loc": ("path", "task_id"), "msg": message, "input": text}]
        ) from None


def wait_of(text: str | None) -> float:
    """`?wait=`: seconds, 0 to 60 (0: answer at once)."""
    if text is None:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 60:  # also refuses nan
        raise invalid(("query", "wait"), "Input should be a number from 0 to 60", text)
    return value


def not_found(task_id: str) -> HTTPException:
    """Also what another key's task looks like, so ids cannot be probed."""
    return HTTPException(404, f"no task with id {task_id}")


_GET_PARAMETERS = [
    {
        "name": "task_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "format": "uuid"},
        "description": "The task's id (a UUID, as `POST` answered it)",
    },
    {
        "name": "wait",
        "in": "query",
        "required": False,
        "schema": {"type": "number", "minimum": 0, "maximum": 60, "default": 0},
        "description": "Hold the request up to this many seconds for a change",
    },
    {"name": "if-none-match", "in": "header", "required": False, "schema": {"type": "string"}},
]


@router.get(
    "/{task_id}",
    openapi_extra={**SECURED, "parameters": _GET_PARAMETERS},
    responses={
        200: {"model": TaskRecord, "description": "The record, with its `ETag` (and `Retry-After` until it ends)"},
        304: {"description": "Unchanged: it still matches `If-None-Match`"},
        404: {"model": ErrorBody},
        422: {
            "description": "Not a task id (a UUID), or a bad `wait`",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}},
        },
    },
)
async def get_task(request: Request) -> Response:
    """The task's record: one Redis read, sent as stored. With `wait`, answers as soon as it changes.

    Nothing for FastAPI to resolve: the id, `wait`, `If-None-Match`, the caller's key, the store and the hub
    come straight from the request and the app state. This is the hottest route, and each parameter or
    dependency FastAPI resolves costs more than the Redis read's client side (the benchmark's profile).
    """
    key = task_id_of(request.path_params["task_id"])
    current_task_id.set(key)
    owner = owner_from(request)
    store: StatusStore = request.app.state.store
    wait = wait_of(request.query_params.get("wait"))
    tags = parse_etags(request.headers.get("if-none-match"))
    if wait > 0:
        hub: EventHub = request.app.state.hub
        snapshot = await wait_for_change(hub, store, key, wait, tags, owner)
    else:
        snapshot = await store.read(key)
    if snapshot is None or not snapshot.visible_to(owner):
        raise not_found(key)
    return record_response(snapshot, tags, request.app.state.retry_after)


@router.get("", responses={200: {"model": TaskPage}}, dependencies=bound)
async def list_tasks(
    store: StoreDep,
    owner: OwnerDep,
    state: TaskState | None = None,
    name: str | None = Query(None, max_length=100),
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = Query(None, max_length=400, description="`next_cursor` of the previous page"),
) -> Response:
    """Task records, newest first. A page may hold fewer than `limit` records (it stops at a few MB): go on
    while `next_cursor` is set."""
    try:
        after = Cursor.decode(cursor) if cursor else None
    except ValueError:
        raise invalid(("query", "cursor"), "invalid cursor", cursor) from None
    page = await list_page(store, owner=owner or "", state=state, name=name, limit=limit, cursor=after)
    tail = json.dumps(page.next_cursor.encode() if page.next_cursor else None).encode()
    return Response(b'{"items":[' + b",".join(page.items) + b'],"next_cursor":' + tail + b"}", media_type=_JSON)


@router.delete(
    "/{task_id}",
    dependencies=bound,
    responses={
        200: {"model": TaskRecord, "description": "Cancelled at once (it was queued)"},
        202: {"model": TaskRecord, "description": "Running; asked to stop, ends `cancelled` shortly"},
        404: {"model": ErrorBody},
        409: {"model": ErrorBody, "description": "The task had already finished"},
        422: {"description": "Not a task id (a UUID)"},
    },
)
async def cancel_task(
    store: StoreDep,
    owner: OwnerDep,
    request: Request,
    background: BackgroundTasks,
    task_id: TaskIdPath,
) -> Response:
    """Cancel a task: at once if queued, cooperatively if running (it then ends `cancelled`, whatever it
    returns)."""
    key = str(task_id)
    reply = await store.cancel(key, owner)
    if reply is None:
        raise not_found(key)
    outcome, snapshot = reply
    if outcome is CancelOutcome.FINISHED:
        raise HTTPException(409, f"task {key} already finished ({snapshot.state})")
    executors: dict[str, Executor] = request.app.state.executors
    if (runs_it := executors.get(snapshot.raw("executor").decode().strip('"'))) is not None:
        background.add_task(runs_it.revoke, key)
    if outcome is CancelOutcome.CANCELLED:
        return Response(snapshot.json, status_code=200, media_type=_JSON)
    headers = {"Retry-After": request.app.state.retry_after}
    return Response(snapshot.json, status_code=202, media_type=_JSON, headers=headers)
