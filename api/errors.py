"""Every error leaves as JSON with the right status: no stack trace, no HTML, no 500 for bad input."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

STORE_DOWN = "the status store (Redis) is unavailable; try again"


class ErrorBody(BaseModel):
    detail: str


def json_response(detail: str, status: int) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("%s %s: Redis unavailable: %s", request.method, request.url.path, type(exc).__name__)
    return JSONResponse({"detail": STORE_DOWN}, status_code=503, headers={"Retry-After": "1"})


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path)
    return json_response("internal error", 500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RedisError, _store_unavailable)
    app.add_exception_handler(Exception, _unexpected)


# Documented on every route that touches Redis, so clients (and schema checkers) know the 503 shape.
STORE_RESPONSES: dict[int | str, dict[str, object]] = {
    503: {"model": ErrorBody, "description": "Redis is unavailable; retry later"},
}
