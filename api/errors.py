"""Every error leaves as JSON with the right status: no stack trace, no HTML, no 500 for bad input."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    detail: str


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("%s %s: Redis unavailable: %s", request.method, request.url.path, exc)
    request.app.state.metrics.redis_error("api")
    return JSONResponse({"detail": "the status store (Redis) is unavailable; try again"}, status_code=503)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path)
    return JSONResponse({"detail": "internal error"}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RedisError, _store_unavailable)
    app.add_exception_handler(Exception, _unexpected)
