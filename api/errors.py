"""Every error leaves as JSON with the right status: no stack trace, no HTML, no 500 for bad input."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from redis.exceptions import OutOfMemoryError, RedisClusterException, RedisError
from starlette.exceptions import HTTPException

log = logging.getLogger(__name__)

STORE_DOWN = "the status store (Redis) is unavailable; try again"
STORE_FULL = "the status store (Redis) is full: no new task is accepted until memory frees; try again later"


class ErrorBody(BaseModel):
    detail: str


def json_response(detail: str, status: int) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, OutOfMemoryError):  # Redis at maxmemory with noeviction: a full store, not a broken one
        log.warning("%s %s: Redis is full (maxmemory)", request.method, request.url.path)
        request.app.state.metrics.redis_error("full")
        request.app.state.memory.refused()
        return store_full()
    log.warning("%s %s: Redis unavailable: %s", request.method, request.url.path, type(exc).__name__)
    request.app.state.metrics.redis_error("api")
    return JSONResponse({"detail": STORE_DOWN}, status_code=503, headers={"Retry-After": "1"})


def store_full() -> JSONResponse:
    return JSONResponse({"detail": STORE_FULL}, status_code=507, headers={"Retry-After": "5"})


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 shape, with every offending input made JSON-safe (an infinite float, bytes, a lone
    surrogate would otherwise turn the 422 into a 500)."""
    assert isinstance(exc, RequestValidationError)
    errors = [{**error, "input": _safe(error.get("input"))} for error in exc.errors()]
    errors = [{key: _safe(value) for key, value in error.items()} for error in errors]
    return JSONResponse({"detail": errors}, status_code=422)


def _safe(value: Any) -> Any:
    """A JSON-encodable stand-in for anything a client sent."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(_safe(key)): _safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_safe(item) for item in value]
    return str(value)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path)
    return json_response("internal error", 500)


def invalid(location: tuple[str, ...], message: str, value: object) -> RequestValidationError:
    """A 422 shaped exactly like FastAPI's own, so one schema (HTTPValidationError) covers them all."""
    return RequestValidationError([{"type": "value_error", "loc": location, "msg": message, "input": value}])


async def _http_error(request: Request, exc: Exception) -> Response:
    """A body that is not even UTF-8 is malformed JSON too: 422 like the rest, not FastAPI's bare 400."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
        errors = [{"type": "json_invalid", "loc": ["body"], "msg": "body is not UTF-8 encoded JSON", "input": None}]
        return JSONResponse({"detail": errors}, status_code=422)
    return await http_exception_handler(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RedisError, _store_unavailable)
    # redis-py's cluster errors (a slot without its node, the cluster unreachable) are not RedisErrors.
    app.add_exception_handler(RedisClusterException, _store_unavailable)
    app.add_exception_handler(Exception, _unexpected)


# Documented on every route that touches Redis, so clients (and schema checkers) know the 503 shape.
STORE_RESPONSES: dict[int | str, dict[str, object]] = {
    503: {"model": ErrorBody, "description": "Redis is unavailable; retry later"},
}
FULL_RESPONSES: dict[int | str, dict[str, object]] = {
    507: {"model": ErrorBody, "description": "Redis is full (maxmemory): no new task until memory frees"},
}
