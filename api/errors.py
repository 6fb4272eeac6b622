"""Every error leaves as JSON with the right status: no stack trace, no HTML, no 500 for bad input."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException

log = logging.getLogger(__name__)

STORE_DOWN = "the status store (Redis) is unavailable; try again"


class ErrorBody(BaseModel):
    detail: str


def json_response(detail: str, status: int) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("%s %s: Redis unavailable: %s", request.method, request.url.path, type(exc).__name__)
    request.app.state.metrics.redis_error("api")
    return JSONResponse({"detail": STORE_DOWN}, status_code=503, headers={"Retry-After": "1"})


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
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RedisError, _store_unavailable)
    app.add_exception_handler(Exception, _unexpected)


# Documented on every route that touches Redis, so clients (and schema checkers) know the 503 shape.
STORE_RESPONSES: dict[int | str, dict[str, object]] = {
    503: {"model": ErrorBody, "description": "Redis is unavailable; retry later"},
}
