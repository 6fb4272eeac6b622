"""Reading server-sent events in tests: a bounded number of them, or until the server ends the stream."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import connect_sse


@dataclass(frozen=True)
class Event:
    id: str
    kind: str
    record: dict[str, Any]


@dataclass(frozen=True)
class Read:
    events: list[Event]
    ended: bool  # the server closed the stream (as it does after a task's terminal event)
    status: int


def read_events(
    url: str,
    *,
    last_id: str | None = None,
    limit: int | None = None,
    until: Callable[[list[Event]], bool] | None = None,
    timeout: float = 30,
    auth: dict[str, str] | None = None,
) -> Read:
    """Events from `url` until `limit` came or `until` holds (then the client hangs up), or the server ends it."""
    headers = {"Last-Event-ID": last_id} if last_id else {}
    headers |= auth or {}
    events: list[Event] = []
    with (
        httpx.Client(timeout=httpx.Timeout(timeout)) as client,
        connect_sse(client, "GET", url, headers=headers) as src,
    ):
        if src.response.status_code != 200:
            return Read([], True, src.response.status_code)
        for sse in src.iter_sse():
            if sse.event in ("state", "progress"):
                events.append(Event(sse.id, sse.event, json.loads(sse.data)))
            if (limit is not None and len(events) >= limit) or (until is not None and until(events)):
                return Read(events, False, 200)  # leaving the block drops the connection: a forced disconnect
    return Read(events, True, 200)
