"""`POST /tasks/{name}`: one documented route per registered task, so /docs shows each task's schema.

No `from __future__ import annotations` here: the endpoints are built at run time, and FastAPI must see
each task's real parameter model in the signature.
"""

import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, BackgroundTasks, HTTPException, Request, Response

from api.auth import SECURED, owner_from
from api.errors import FULL_RESPONSES, STORE_RESPONSES, ErrorBody, invalid, store_full
from api.executors import Executor
from api.params import parse_params
from shared.logs import current_task_id
from shared.record import TaskRecord
from shared.routing import Route
from shared.store import IdempotencyConflict, StatusStore
from shared.tasks import TaskRegistry, TaskSpec

log = logging.getLogger(__name__)

_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
    "description": "Repeat a request safely: the same key and body return the original task (200)",
}

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": TaskRecord, "description": "Idempotent replay: the task this Idempotency-Key created"},
    202: {"model": TaskRecord, "description": "Queued; follow it at `Location`"},
    401: {"model": ErrorBody, "description": "Missing or invalid API key (when API_KEYS is set)"},
    409: {"model": ErrorBody, "description": "The Idempotency-Key was used with a different body"},
    413: {"model": ErrorBody, "description": "Request body too large"},
    422: {
        "description": "Bad parameters, malformed JSON or a bad Idempotency-Key",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}},
    },
    **STORE_RESPONSES,
    **FULL_RESPONSES,
}


def submit_router(registry: TaskRegistry, routes: dict[str, Route]) -> APIRouter:
    router = APIRouter(prefix="/tasks", tags=["submit"])
    for spec in registry:
        route = routes[spec.name]
        where = f"on Celery (queue `{route.queue}`)" if route.executor == "celery" else "in the API process"
        router.add_api_route(
            f"/{spec.name}",
            _submit_endpoint(spec),
            methods=["POST"],
            status_code=202,
            name=f"submit_{spec.name}",
            summary=f"Start `{spec.name}`",
            description=f"{(spec.fn.__doc__ or '').strip()}\n\nRuns {where}.".strip(),
            response_class=Response,
            responses=_RESPONSES,
            openapi_extra={**params_body(spec), **SECURED, "parameters": [_IDEMPOTENCY_KEY]},
        )
    router.add_api_route(
        "/{name}", _unknown_task, methods=["POST"], include_in_schema=False, responses={404: {"model": ErrorBody}}
    )
    return router


def params_body(spec: TaskSpec) -> dict[str, Any]:
    """The request body's documentation (the body is read by `parse_params`, not by FastAPI)."""
    model = spec.params_model
    required = any(field.is_required() for field in model.model_fields.values())
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}}


def _submit_endpoint(spec: TaskSpec) -> Callable[..., Awaitable[Response]]:
    model = spec.params_model
    required = any(field.is_required() for field in model.model_fields.values())

    async def submit(request: Request) -> Response:
        """Nothing for FastAPI to resolve (the header, the key, the body are read here, and the in-process run
        goes out with the response): each parameter FastAPI resolves costs more than the store's round trip."""
        mine = owner_from(request) or ""
        idempotency_key = _idempotency_key(request)
        background = BackgroundTasks()
        store: StatusStore = request.app.state.store
        executor: Executor = request.app.state.routes[spec.name]
        params_json = parse_params(model, await request.body(), required=required)
        if not request.app.state.memory.admit(len(params_json)):  # what is accepted must be able to finish
            return store_full()
        task_id = store.new_task_id(mine, idempotency_key)
        current_task_id.set(task_id)  # log lines from here on, and the in-process run, name the task
        idempotency = (idempotency_key, _fingerprint(spec.name, params_json)) if idempotency_key else None
        plan = await executor.plan(task_id, spec.name, params_json, mine)
        try:
            created = await store.create(
                task_id,
                spec.name,
                params_json,
                executor.name,
                owner=mine,
                max_attempts=spec.max_attempts,
                idempotency=idempotency,
                lease=plan.lease,
                publish=plan.publish,
            )
        except IdempotencyConflict:
            raise HTTPException(409, "this Idempotency-Key was already used with a different request") from None
        retry_after: str = request.app.state.retry_after
        if not created.new:
            return _record_response(created.task_id, created.snapshot.json, 200, retry_after)
        replicas: int = request.app.state.settings.redis_wait_replicas
        if replicas:  # asynchronous replication: a failover right after the 202 could forget the task
            await _replicated(store, task_id, replicas, request.app.state.settings.redis_wait_timeout_ms)
        try:
            await executor.dispatch(task_id, spec.name, params_json, mine, plan, background)
        except Exception as exc:
            log.exception("task %s could not be dispatched", task_id)
            error = f"DispatchError: {type(exc).__name__}"
            await store.finish(task_id, "failed", owner=mine, name=spec.name, error=error)
            if idempotency_key:
                await store.forget_idempotency_key(mine, idempotency_key)
            raise HTTPException(503, "the task could not be handed to its executor; try again") from None
        response = _record_response(task_id, created.snapshot.json, 202, retry_after)
        response.background = background  # runs after the response is sent, as BackgroundTasks always do
        return response

    return submit


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= 200:
        raise invalid(("header", "Idempotency-Key"), "String should have 1 to 200 characters", key)
    return key


async def _replicated(store: StatusStore, task_id: str, replicas: int, timeout_ms: int) -> None:
    """Redis WAIT: the record (and, inline, its message) is on `replicas` replicas, or the wait timed out."""
    acknowledged = int(await store.redis.wait(replicas, timeout_ms))
    if acknowledged < replicas:
        log.warning("task %s: %d of %d replicas have it after %d ms", task_id, acknowledged, replicas, timeout_ms)


def _record_response(task_id: str, record: bytes, status: int, retry_after: str) -> Response:
    headers = {"Location": f"/tasks/{task_id}", "Retry-After": retry_after}
    return Response(record, status_code=status, media_type="application/json", headers=headers)


def _fingerprint(name: str, params_json: str) -> str:
    """What "the same request" means for an Idempotency-Key: the task and its validated parameters."""
    return hashlib.sha256(f"{name}\n{params_json}".encode()).hexdigest()


async def _unknown_task(name: str) -> Any:
    raise HTTPException(404, f"no task named {name!r}")
