"""`AsyncClient`: the same as `Client`, for asyncio (or trio) code, on `httpx.AsyncClient`."""

from __future__ import annotations

import builtins
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from types import TracebackType
from typing import Any, Self

import anyio
import httpx
from httpx_sse import aconnect_sse

from client import calls
from client.calls import DEFAULT_TIMEOUT, DEFAULT_URL
from client.follow import RETRIED, Follower, StreamEnded
from shared.catalog import TaskType
from shared.record import TaskRecord, TaskState


class AsyncClient:
    """Start, read, follow, list and cancel tasks. Errors the API answers raise `ApiError` subclasses; network
    failures raise httpx's own `httpx.TransportError`. Use it with `async with`, or `await aclose()`."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`timeout` bounds each request (a stream's or a long-poll's read gets its own); `transport` is httpx's,
        for tests (`httpx.ASGITransport`, `httpx.MockTransport`) or custom networking."""
        headers = {"X-API-Key": api_key} if api_key is not None else None
        self._timeout = timeout
        self._http = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout, transport=transport)

    @property
    def base_url(self) -> str:
        return str(self._http.base_url)

    async def submit(
        self, name: str, params: Mapping[str, Any] | None = None, *, idempotency_key: str | None = None
    ) -> TaskRecord:
        """Start task `name` (see `Client.submit`)."""
        return calls.record(await self._send(calls.submit(name, params, idempotency_key)))

    async def get(self, task_id: str) -> TaskRecord:
        return calls.record(await self._send(calls.get(task_id)))

    async def cancel(self, task_id: str) -> TaskRecord:
        """Cancel a task (see `Client.cancel`): `cancelled` at once, or still running and stopping."""
        return calls.record(await self._send(calls.cancel(task_id)))

    async def list(
        self, *, state: TaskState | None = None, name: str | None = None, limit: int | None = None
    ) -> AsyncGenerator[TaskRecord]:
        """Every task (of this API key), newest first, fetched a page of `limit` (1..500) at a time as you go."""
        cursor: str | None = None
        while True:
            call = calls.page(state=state, name=name, limit=limit, cursor=cursor)
            items, cursor = calls.page_of(await self._send(call))
            for item in items:
                yield item
            if cursor is None:
                return

    async def catalog(self) -> builtins.list[TaskType]:
        return calls.catalog_of(await self._send(calls.catalog()))

    # `timeout` rather than a cancel scope (ASYNC109): running out of time is an answer, TaskTimeout with the last
    # record seen, and leaves the task running; the same parameter as `Client.wait`.
    async def wait(self, task_id: str, *, timeout: float | None = None) -> TaskRecord:  # noqa: ASYNC109
        """The task's final record, once it ends; raises `TaskTimeout` if `timeout` seconds pass first."""
        follower = Follower(task_id, timeout)
        async with aclosing(self._follow(follower)) as records:
            async for _ in records:
                pass
        return follower.final

    def follow(self, task_id: str, *, timeout: float | None = None) -> AsyncGenerator[TaskRecord]:
        """Each new record of the task until the final one (see `Client.follow`). Leaving the loop early? Wrap it in
        `contextlib.aclosing`, so that the open stream is closed at once."""
        return self._follow(Follower(task_id, timeout))

    async def _follow(self, follower: Follower) -> AsyncGenerator[TaskRecord]:
        while not follower.done:
            call = follower.next_call()
            try:
                if call.stream:
                    async with aclosing(self._stream(call, follower)) as records:
                        async for change in records:
                            yield change
                elif (news := follower.polled(await self._send(call))) is not None:
                    yield news
            except RETRIED as exc:
                await anyio.sleep(follower.failed(exc))

    async def _stream(self, call: calls.Call, follower: Follower) -> AsyncGenerator[TaskRecord]:
        headers = dict(call.headers or {})  # aconnect_sse adds its own to it
        timeout = calls.timeouts(call, self._timeout)
        async with aconnect_sse(self._http, call.method, call.path, headers=headers, timeout=timeout) as sse:
            if sse.response.status_code not in call.ok:
                await sse.response.aread()
            if not follower.opened(calls.checked(call, sse.response)):
                return
            async with aclosing(sse.aiter_sse()) as events:
                async for event in events:
                    if (news := follower.event(event)) is not None:
                        yield news
                    if not follower.keep_reading():
                        return
        raise StreamEnded(f"the event stream of {follower.task_id} ended early")

    async def _send(self, call: calls.Call) -> httpx.Response:
        timeout = calls.timeouts(call, self._timeout)
        response = await self._http.request(
            call.method, call.path, params=call.params, headers=call.headers, json=call.json, timeout=timeout
        )
        return calls.checked(call, response)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()
