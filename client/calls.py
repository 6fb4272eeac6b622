"""The API's requests and what their answers mean, written once: `Client` and `AsyncClient` only send them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter

from client.errors import error_for
from shared.catalog import TaskType
from shared.record import TaskRecord, TaskState

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 10.0  # seconds, per request (a stream's or a long-poll's read gets its own)


@dataclass(frozen=True)
class Call:
    """One request, and the statuses that are answers rather than errors."""

    method: str
    path: str
    ok: tuple[int, ...] = (200,)
    params: dict[str, str] | None = None
    headers: dict[str, str] | None = None
    json: Any = None
    read_timeout: float | None = None  # instead of the client's: a long-poll holds, a stream idles
    stream: bool = False  # server-sent events, read as they come


class _Page(BaseModel):
    items: list[TaskRecord]
    next_cursor: str | None


_CATALOG = TypeAdapter(list[TaskType])


def submit(name: str, params: Mapping[str, Any] | None, idempotency_key: str | None) -> Call:
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else None
    return Call("POST", f"/tasks/{segment(name)}", ok=(200, 202), headers=headers, json=dict(params or {}))


def get(task_id: str) -> Call:
    return Call("GET", f"/tasks/{segment(task_id)}")


def cancel(task_id: str) -> Call:
    return Call("DELETE", f"/tasks/{segment(task_id)}", ok=(200, 202))


def page(*, state: TaskState | None, name: str | None, limit: int | None, cursor: str | None) -> Call:
    query = {"state": state, "name": name, "limit": None if limit is None else str(limit), "cursor": cursor}
    return Call("GET", "/tasks", params={key: value for key, value in query.items() if value is not None})


def catalog() -> Call:
    return Call("GET", "/catalog")


def segment(value: str) -> str:
    """A task id or name as one path segment, so that no value can reach another route."""
    if value in ("", ".", ".."):  # "" is the list route; the dots would be resolved away by the URL
        raise ValueError(f"not a task id or name: {value!r}")
    return quote(value, safe="")


def timeouts(call: Call, default: float) -> httpx.Timeout:
    return httpx.Timeout(default, read=default if call.read_timeout is None else call.read_timeout)


def checked(call: Call, response: httpx.Response) -> httpx.Response:
    """The response if its status is one `call` expects, else its typed error (the body must have been read)."""
    if response.status_code not in call.ok:
        raise error_for(response)
    return response


def record(response: httpx.Response) -> TaskRecord:
    return TaskRecord.model_validate_json(response.content)


def page_of(response: httpx.Response) -> tuple[list[TaskRecord], str | None]:
    """One page's records, and the cursor of the next page (None after the last)."""
    parsed = _Page.model_validate_json(response.content)
    return parsed.items, parsed.next_cursor


def catalog_of(response: httpx.Response) -> list[TaskType]:
    return _CATALOG.validate_json(response.content)
