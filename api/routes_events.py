"""Server-sent events: one task's changes, and every task's changes for dashboards.

Each event is `id:`, `event:` (`state` when the task's state changed, else `progress`) and `data:` (the
whole record as `GET /tasks/{id}` returns it). A task's own stream is built from its record: the event id
is the record's version, so a client that reconnects with `Last-Event-ID` gets the record if it changed
since, and a client that missed a few changes loses nothing but intermediate progress. The all-tasks stream
uses the ids of the partitions' event streams, from which it can replay what a dashboard missed.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Header, HTTPException, Response
from fastapi.sse import EventSourceResponse, format_sse_event

from api.auth import OwnerDep
from api.deps import HubDep, MetricsDep, StoreDep, bind_task_id
from api.errors import ErrorBody
from api.hub import EventHub
from api.metrics import Metrics
from api.routes_tasks import TaskIdPath, not_found
from shared.feed import TaskEvent, parse_event_id, read_after
from shared.snapshot import Snapshot
from shared.store import STORE_ERRORS, StatusStore

router = APIRouter(tags=["events"])

KEEPALIVE_SECONDS = 15.0  # an idle stream sends a comment this often, so proxies keep it open
_RECONNECT_MS = 1_000  # what a browser waits before it reconnects (with Last-Event-ID)
_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_PING = b": ping\n\n"
_VERSION = re.compile(r"\d{1,18}")
_SKEW_MS = 2_000  # with several partitions (several servers' clocks), a resume starts this much earlier
_BACKLOG_BATCH = 500
_EVENT_SHAPE = (
    "Each event: `id:` (see the endpoint), `event:` `state` or `progress`, `data:` the whole record as "
    "`GET /tasks/{id}` returns it (schema `TaskRecord`)"
)
_STREAM_DOC = {
    "content": {
        "text/event-stream": {
            "schema": {"type": "string", "description": _EVENT_SHAPE},
            # Each event's `data:` (OpenAPI has no standard for event streams yet; generators may read this).
            "x-event-data": {"$ref": "#/components/schemas/TaskRecord"},
            "x-event-types": ["state", "progress"],
        }
    },
    "description": _EVENT_SHAPE,
}


def _encode(snapshot: Snapshot, kind: str, event_id: str, *, first: bool = False) -> bytes:
    data = snapshot.json.decode()
    return format_sse_event(data_str=data, event=kind, id=event_id, retry=_RECONNECT_MS if first else None)


def _after_version(last_event_id: str | None) -> int | None:
    """The version a task stream resumes after. An id of the older stream format (`ms-seq`) resumes from the
    record as it is now; anything else is a 422."""
    if not last_event_id:
        return None
    if _VERSION.fullmatch(last_event_id):
        return int(last_event_id)
    if parse_event_id(last_event_id) is not None:
        return None
    raise HTTPException(422, "invalid Last-Event-ID: expected an id this stream sent")


@router.get(
    "/tasks/{task_id}/events",
    response_class=Response,
    dependencies=[Depends(bind_task_id)],
    responses={
        200: _STREAM_DOC,
        204: {"description": "Nothing after `Last-Event-ID` and the task has ended: do not reconnect"},
        401: {"model": ErrorBody},
        404: {"model": ErrorBody},
        422: {"model": ErrorBody, "description": "Not a task id (a UUID), or a bad `Last-Event-ID`"},
    },
)
async def task_events(
    store: StoreDep,
    owner: OwnerDep,
    hub: HubDep,
    metrics: MetricsDep,
    task_id: TaskIdPath,
    last_event_id: str | None = Header(None, description="The record version this client saw last"),
) -> Response:
    """Every change of one task as it happens, from its queuing to its end (then the stream closes). Event
    ids are the record's versions."""
    key = str(task_id)
    after = _after_version(last_event_id)
    snapshot = await store.read(key)
    if snapshot is None or not snapshot.visible_to(owner):
        raise not_found(key)
    if after is not None and snapshot.version <= after and snapshot.terminal:
        return Response(status_code=204)
    return EventSourceResponse(_follow_task(hub, store, metrics, key, after), headers=_HEADERS)


async def _follow_task(
    hub: EventHub, store: StatusStore, metrics: Metrics, task_id: str, after: int | None
) -> AsyncIterator[bytes]:
    try:
        async with hub.task_changes(task_id) as changes:
            current = await store.read(task_id)  # again, now that no later change can be missed
            if current is None:
                return
            sent_state: str | None = None
            if after is None or current.version > after:
                yield _encode(current, "state", str(current.version), first=True)
                sent_state = current.state
            while not current.terminal:
                fresh = await changes.wait(KEEPALIVE_SECONDS)
                if fresh is None:
                    if not await store.redis.exists(store.keys.record(task_id)):
                        return  # the record expired while nobody changed it
                    yield _PING
                    continue
                if fresh.version <= current.version:
                    continue
                kind = "progress" if fresh.state == sent_state else "state"
                yield _encode(fresh, kind, str(fresh.version), first=sent_state is None)
                current, sent_state = fresh, fresh.state
    except STORE_ERRORS:
        metrics.redis_error("events")  # the client reconnects with Last-Event-ID once Redis is back


@router.get(
    "/events",
    response_class=Response,
    responses={
        200: _STREAM_DOC,
        401: {"model": ErrorBody},
        422: {"model": ErrorBody, "description": "A bad `Last-Event-ID`"},
    },
)
async def all_events(
    hub: HubDep,
    store: StoreDep,
    owner: OwnerDep,
    metrics: MetricsDep,
    last_event_id: str | None = Header(None, description="The id of the last event this client saw"),
) -> Response:
    """Every change of every task (with API keys: of the caller's tasks), for dashboards: from now, or after
    `Last-Event-ID` while the feed keeps it (EVENTS_MAXLEN, EVENTS_MAX_AGE). Ids are stream ids (`ms-seq`)."""
    after = None
    if last_event_id:
        after = parse_event_id(last_event_id)
        if after is None:
            raise HTTPException(422, "invalid Last-Event-ID: expected an id of this stream, such as 1718000000000-0")
    await hub.start()
    return EventSourceResponse(_follow_all(hub, store, metrics, owner, after), headers=_HEADERS)


async def _follow_all(
    hub: EventHub, store: StatusStore, metrics: Metrics, owner: str | None, after: tuple[int, int] | None
) -> AsyncIterator[bytes]:
    first = True
    sent: dict[int, tuple[int, int]] = {}  # partition -> position of the last event sent from it
    try:
        async with hub.all_changes(owner) as subscription:
            if after is not None:
                async for event, snapshot in _backlog(store, owner, after):
                    yield _encode(snapshot, event.kind, event.id, first=first)
                    first, sent[event.partition] = False, event.position
            while True:
                try:
                    change = await subscription.next(KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield _PING
                    continue
                if change is None:
                    return  # this client fell too far behind; it resumes from the stream with Last-Event-ID
                event = change.event
                if event.position <= sent.get(event.partition, (-1, -1)):
                    continue  # already sent from the backlog
                yield _encode(change.snapshot, event.kind, event.id, first=first)
                first, sent[event.partition] = False, event.position
    except STORE_ERRORS:
        metrics.redis_error("events")


async def _backlog(
    store: StatusStore, owner: str | None, after: tuple[int, int]
) -> AsyncIterator[tuple[TaskEvent, Snapshot]]:
    """What the feed kept after `after`, a batch at a time: only the caller's tasks' records are read."""
    partitions = store.keys.partitions
    start = after if partitions == 1 else (max(0, after[0] - _SKEW_MS), 0)
    positions = {p: f"{start[0]}-{start[1]}" for p in store.keys.all_partitions()}
    while True:
        events = await read_after(store.redis, store.keys, positions, count=_BACKLOG_BATCH)
        if not events:
            return
        for event in events:
            positions[event.partition] = event.id
        mine = [event for event in events if event.visible_to(owner)]
        latest = {event.task_id: event for event in mine}
        ids = list(latest)
        snapshots = dict(zip(ids, await store.read_many(ids), strict=True))
        for event in sorted(latest.values(), key=lambda e: e.position):
            if (snapshot := snapshots.get(event.task_id)) is not None:
                yield event, snapshot
