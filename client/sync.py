"""`Client`: the API from blocking Python code, on `httpx.Client`."""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any, Self

import httpx
from httpx_sse import connect_sse

from client import calls
from client.calls import DEFAULT_TIMEOUT, DEFAULT_URL
from client.follow import RETRIED, Follower, StreamEnded
from shared.catalog import TaskType
from shared.record import TaskRecord, TaskState


class Client:
    """Start, read, follow, list and cancel tasks. Errors the API answers raise `ApiError` subclasses; network
    failures raise httpx's own `httpx.TransportError`. Use it as a context manager, or `close()` it."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """`timeout` bounds each request (a stream's or a long-poll's read gets its own); `transport` is httpx's,
        for tests or custom networking."""
        headers = {"X-API-Key": api_key} if api_key is not None else None
        self._timeout = timeout
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout, transport=transport)

    @property
    def base_url(self) -> str:
        return str(self._http.base_url)

    def submit(
        self, name: str, params: Mapping[str, Any] | None = None, *, idempotency_key: str | None = None
    ) -> TaskRecord:
        """Start task `name`; returns it queued. With `idempotency_key`, sending the same again returns the task the
        key first created (so a retry after a lost answer starts nothing twice); another body raises `Conflict`."""
        return calls.record(self._send(calls.submit(name, params, idempotency_key)))

    def get(self, task_id: str) -> TaskRecord:
        return calls.record(self._send(calls.get(task_id)))

    def cancel(self, task_id: str) -> TaskRecord:
        """Cancel a task: its record says `cancelled` if it was queued, else it is still running and stops within
        seconds (`wait` for it). A task that already ended raises `Conflict`."""
        return calls.record(self._send(calls.cancel(task_id)))

    def list(
        self, *, state: TaskState | None = None, name: str | None = None, limit: int | None = None
    ) -> Iterator[TaskRecord]:
        """Every task (of this API key), newest first, fetched a page of `limit` (1..500) at a time as you go."""
        cursor: str | None = None
        while True:
            items, cursor = calls.page_of(self._send(calls.page(state=state, name=name, limit=limit, cursor=cursor)))
            yield from items
            if cursor is None:
                return

    def catalog(self) -> builtins.list[TaskType]:
        """The tasks this API can start, with the JSON Schema of their parameters."""
        return calls.catalog_of(self._send(calls.catalog()))

    def wait(self, task_id: str, *, timeout: float | None = None) -> TaskRecord:
        """The task's final record, once it ends; raises `TaskTimeout` if `timeout` seconds pass first."""
        follower = Follower(task_id, timeout)
        for _ in self._follow(follower):
            pass
        return follower.final

    def follow(self, task_id: str, *, timeout: float | None = None) -> Iterator[TaskRecord]:
        """Each new record of the task as it changes, until (and including) the final one. Reads the event stream,
        resumed after a drop; falls back to long-polling. Raises `TaskTimeout` after `timeout` seconds."""
        return self._follow(Follower(task_id, timeout))

    def _follow(self, follower: Follower) -> Iterator[TaskRecord]:
        while not follower.done:
            call = follower.next_call()
            try:
                if call.stream:
                    yield from self._stream(call, follower)
                elif (news := follower.polled(self._send(call))) is not None:
                    yield news
            except RETRIED as exc:
                time.sleep(follower.failed(exc))

    def _stream(self, call: calls.Call, follower: Follower) -> Iterator[TaskRecord]:
        headers = dict(call.headers or {})  # connect_sse adds its own to it
        timeout = calls.timeouts(call, self._timeout)
        with connect_sse(self._http, call.method, call.path, headers=headers, timeout=timeout) as sse:
            if sse.response.status_code not in call.ok:
                sse.response.read()
            if not follower.opened(calls.checked(call, sse.response)):
                return
            for event in sse.iter_sse():
                if (news := follower.event(event)) is not None:
                    yield news
                if not follower.keep_reading():
                    return
        raise StreamEnded(f"the event stream of {follower.task_id} ended early")

    def _send(self, call: calls.Call) -> httpx.Response:
        timeout = calls.timeouts(call, self._timeout)
        response = self._http.request(
            call.method, call.path, params=call.params, headers=call.headers, json=call.json, timeout=timeout
        )
        return calls.checked(call, response)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
