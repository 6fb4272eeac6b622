"""What the API's error answers become: one exception type per thing a caller can act on.

Network failures (connection refused, timeouts) are not wrapped: they stay httpx's `httpx.TransportError`,
as any httpx user expects, and `ApiError` always means the API itself answered.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from shared.record import TaskRecord


class ApiError(Exception):
    """The API answered with an error status; `detail` is its `{"detail": ...}` (a 422's is a list of problems)."""

    def __init__(self, status: int, detail: Any) -> None:
        text = detail if isinstance(detail, str) else json.dumps(detail)
        super().__init__(f"HTTP {status}: {text}")
        self.status = status
        self.detail = detail


class Unauthorized(ApiError):
    """401: the API has `API_KEYS` and this client sent no key, or a wrong one."""


class NotFound(ApiError):
    """404: no such task (with API keys, also another key's task), or no task of that name to start."""


class Conflict(ApiError):
    """409: an Idempotency-Key reused with another body, or cancelling a task that already ended."""


class InvalidRequest(ApiError):
    """422 (parameters the task refuses; `detail` lists why) or 413 (body too large)."""


class Unavailable(ApiError):
    """503 (Redis is down) or 507 (it is full): try again, after `retry_after` seconds when the API said."""

    def __init__(self, status: int, detail: Any, retry_after: float | None) -> None:
        super().__init__(status, detail)
        self.retry_after = retry_after


class TaskTimeout(TimeoutError):
    """The task had not ended when `wait` (or `follow`) ran out of time; it goes on. `last` is its latest record."""

    def __init__(self, task_id: str, last: TaskRecord | None) -> None:
        seen = f"still {last.state}" if last is not None else "no record received"
        super().__init__(f"task {task_id} did not end in time ({seen})")
        self.task_id = task_id
        self.last = last


_BY_STATUS: dict[int, type[ApiError]] = {
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    413: InvalidRequest,
    422: InvalidRequest,
}


def error_for(response: httpx.Response) -> ApiError:
    """The typed error for an error answer (its body already read)."""
    status, detail = response.status_code, _detail(response)
    if status in (503, 507):
        return Unavailable(status, detail, retry_after(response.headers.get("retry-after")))
    return _BY_STATUS.get(status, ApiError)(status, detail)


def _detail(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return response.text or response.reason_phrase
    return body["detail"] if isinstance(body, dict) and "detail" in body else body


def retry_after(value: str | None) -> float | None:
    """`Retry-After` in seconds: it may be a number of seconds or an HTTP date (RFC 9110); None if absent or bad."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max((moment - datetime.now(UTC)).total_seconds(), 0.0)
