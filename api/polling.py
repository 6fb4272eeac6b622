"""Cheaper polling: conditional reads (`ETag` / `If-None-Match`) and the long-poll (`?wait=N`).

The long-poll never sleeps in a loop: it registers with the process's event hub, reads the record once,
and then takes the newer records the hub reads for every waiter of that task (or gives up when the wait
is over).
"""

from __future__ import annotations

import asyncio

from fastapi import Response

from api.hub import EventHub
from shared.snapshot import Snapshot
from shared.store import StatusStore

_JSON = "application/json"


def parse_etags(header: str | None) -> set[str]:
    """The entity tags of an `If-None-Match` header (weak ones compared by their tag, as RFC 9110 says)."""
    if not header:
        return set()
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def matches(tags: set[str], snapshot: Snapshot) -> bool:
    return "*" in tags or snapshot.etag in tags


async def wait_for_change(
    hub: EventHub, store: StatusStore, task_id: str, seconds: float, known: set[str], owner: str | None = None
) -> Snapshot | None:
    """The record once it differs from `known` (or from how it is now), it has ended, or `seconds` passed;
    None if there is no such task for this owner (found out before waiting). One read, then whatever
    newer record the hub hands over."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    async with hub.task_changes(task_id) as changes:
        snapshot = await store.read(task_id)
        if snapshot is None or not snapshot.visible_to(owner):
            return None
        baseline = known if known and "*" not in known else {snapshot.etag}
        while snapshot.etag in baseline and not snapshot.terminal:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            fresh = await changes.wait(remaining)
            if fresh is None:
                break
            if fresh.version > snapshot.version:
                snapshot = fresh
        return snapshot


def record_response(snapshot: Snapshot, tags: set[str], retry_after: str, status_code: int = 200) -> Response:
    """The record with its `ETag`; 304 without a body when the client already has it."""
    headers = {"ETag": snapshot.etag, "Cache-Control": "no-cache"}
    if not snapshot.terminal:
        headers["Retry-After"] = retry_after
    if matches(tags, snapshot):
        return Response(status_code=304, headers=headers)
    return Response(snapshot.json, status_code=status_code, media_type=_JSON, headers=headers)
