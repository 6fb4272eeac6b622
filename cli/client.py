"""The REST API as the CLI sees it: plain calls, and following one task's server-sent events."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
from httpx_sse import connect_sse

Record = dict[str, Any]
_RECONNECTS = 10  # tries in a row to get a dropped event stream back before giving up


class ApiError(Exception):
    """The API refused (4xx/5xx) or could not be reached; the message says which and why."""


def _detail(resp: httpx.Response) -> str:
    try:
        detail = resp.json().get("detail", resp.text)
    except (ValueError, AttributeError):
        detail = resp.text
    return detail if isinstance(detail, str) else json.dumps(detail)


class Api:
    """A thin client of the service's REST API; every failure becomes an ApiError."""

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 10.0) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self.http = httpx.Client(base_url=base_url, timeout=timeout, headers=headers)

    def call(self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kwargs: Any) -> httpx.Response:
        try:
            resp = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot reach the API at {self.http.base_url}: {exc}") from None
        if resp.status_code not in ok:
            raise ApiError(f"HTTP {resp.status_code}: {_detail(resp)}")
        return resp

    def submit(self, name: str, params: dict[str, Any]) -> Record:
        record: Record = self.call("POST", f"/tasks/{name}", ok=(202,), json=params).json()
        return record

    def get(self, task_id: str) -> Record:
        record: Record = self.call("GET", f"/tasks/{task_id}").json()
        return record

    def list_tasks(self, *, state: str | None, name: str | None, limit: int) -> list[Record]:
        query = {key: value for key, value in {"state": state, "name": name, "limit": limit}.items() if value}
        items: list[Record] = self.call("GET", "/tasks", params=query).json()["items"]
        return items

    def cancel(self, task_id: str) -> tuple[int, Record]:
        resp = self.call("DELETE", f"/tasks/{task_id}", ok=(200, 202))
        record: Record = resp.json()
        return resp.status_code, record

    def catalog(self) -> list[Record]:
        types: list[Record] = self.call("GET", "/catalog").json()
        return types

    def follow(self, task_id: str, on_change: Callable[[Record], None]) -> Record:
        """Call `on_change` with the record after every change until the task ends; returns the last record.

        The server ends the stream after the terminal event, and answers a reconnection after that with
        204; a stream that drops before then is resumed with `Last-Event-ID`, so no change is missed.
        """
        last_id: str | None = None
        record: Record | None = None
        failures = 0
        while True:
            headers = {"Last-Event-ID": last_id} if last_id else {}
            try:
                with connect_sse(self.http, "GET", f"/tasks/{task_id}/events", headers=headers, timeout=60) as source:
                    status = source.response.status_code
                    if status == 204:
                        return record if record is not None else self.get(task_id)
                    if status != 200:
                        source.response.read()
                        raise ApiError(f"HTTP {status}: {_detail(source.response)}")
                    for event in source.iter_sse():
                        if event.event in ("state", "progress"):
                            record, last_id, failures = json.loads(event.data), event.id or last_id, 0
                            on_change(record)
            except httpx.HTTPError as exc:
                failures += 1
                if failures > _RECONNECTS:
                    raise ApiError(f"lost the event stream of {task_id}: {exc}") from None
                time.sleep(min(failures * 0.5, 3.0))
