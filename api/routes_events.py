"""Server-sent events: one task's changes from its own stream, and every task's changes for dashboards.

Each event is `id:` (the Redis stream id), `event:` (`state` or `progress`) and `data:` (the whole record as
`GET /tasks/{id}` returns it). A client that reconnects with `Last-Event-ID` gets exactly what came after.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Header, HTTPException, Response
from fastapi.sse import EventSourceResponse, format_sse_event
from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.auth import OwnerDep
from api.deps import HubDep, MetricsDep, StoreDep, bind_task_id
from api.errors import ErrorBody
from api.hub import EventHub
from api.metrics import Metrics
from api.routes_tasks import not_found
from shared.events import STATE
from shared.feed import (
    TaskEvent,
    event_id_key,
    read_all_events,
    read_task_events,
    valid_event_id,
)
from shared.keys import task_key

router = APIRouter(tags=["events"])

KEEPALIVE_SECONDS = 15.0  # an idle stream sends a comment this often, so proxies keep it open
_RECONNECT_MS = 1_000  # what a browser waits before it reconnects (with Last-Event-ID)
_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_PING = b": ping\n\n"
_STREAM_DOC = {
    "content": {"text/event-stream": {}},
    "description": "`id:` stream id, `event:` `state` or `progress`, `data:` the record",
}


def _after(last_event_id: str | None) -> str | None:
    if last_event_id is None or last_event_id == "":
        return None
    if not valid_event_id(last_event_id):
        raise HTTPException(422, "invalid Last-Event-ID: expected an id of this stream, such as 1718000000000-0")
    return last_event_id


def _encode(event: TaskEvent, *, first: bool = False) -> bytes:
    data = event.snapshot.json.decode()
    return format_sse_event(data_str=data, event=event.kind, id=event.id, retry=_RECONNECT_MS if first else None)


@router.get(
    "/tasks/{task_id}/events",
    response_class=Response,
    dependencies=[Depends(bind_task_id)],
    responses={
        200: _STREAM_DOC,
        204: {"description": "Nothing after `Last-Event-ID` and the task has ended: do not reconnect"},
        401: {"model": ErrorBody},
        404: {"model": ErrorBody},
        422: {"model": ErrorBody},
    },
)
async def task_events(
    task_id: str,
    store: StoreDep,
    owner: OwnerDep,
    hub: HubDep,
    metrics: MetricsDep,
    last_event_id: str | None = Header(None),
) -> Response:
    """Every change of one task as it happens, from its queuing to its end (then the stream closes)."""
    after = _after(last_event_id)
    snapshot = await store.read(task_id)
    if snapshot is None or not snapshot.visible_to(owner):
        raise not_found(task_id)
    first = await read_task_events(store.redis, task_id, after)
    if not first:
        if snapshot.terminal and after is not None:
            return Response(status_code=204)
        if after is None:  # a record older than its stream: its current state is the one event there is
            first = [TaskEvent("0-0", STATE, snapshot)]
    stream = _follow_task(hub, store.redis, metrics, task_id, first, after)
    return EventSourceResponse(stream, headers=_HEADERS)


async def _follow_task(
    hub: EventHub, redis: Redis, metrics: Metrics, task_id: str, pending: list[TaskEvent], after: str | None
) -> AsyncIterator[bytes]:
    first = True
    try:
        async with hub.task_changes(task_id) as changes:
            while True:
                for event in pending:
                    yield _encode(event, first=first)
                    first, after = False, event.id
                    if event.snapshot.terminal:
                        return
                pending = await read_task_events(redis, task_id, after)
                while not pending:
                    if await changes.wait(KEEPALIVE_SECONDS):
                        pending = await read_task_events(redis, task_id, after)
                    elif await redis.exists(task_key(task_id)):
                        yield _PING
                    else:
                        return  # the record expired while nobody changed it
    except RedisError:
        metrics.redis_error("events")  # the client reconnects with Last-Event-ID once Redis is back


@router.get(
    "/events",
    response_class=Response,
    responses={200: _STREAM_DOC, 401: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)
async def all_events(
    hub: HubDep, store: StoreDep, owner: OwnerDep, metrics: MetricsDep, last_event_id: str | None = Header(None)
) -> Response:
    """Every change of every task (with API keys: of the caller's tasks), for dashboards: from now, or after
    `Last-Event-ID` while it is kept."""
    after = _after(last_event_id)
    await hub.start()
    return EventSourceResponse(_follow_all(hub, store.redis, metrics, owner, after), headers=_HEADERS)


async def _follow_all(
    hub: EventHub, redis: Redis, metrics: Metrics, owner: str | None, after: str | None
) -> AsyncIterator[bytes]:
    first = True
    try:
        async with hub.all_changes() as subscription:
            while after is not None and (backlog := await read_all_events(redis, after)):
                for old in backlog:
                    if old.snapshot.visible_to(owner):
                        yield _encode(old, first=first)
                        first = False
                    after = old.id
            while True:
                try:
                    event = await subscription.next(KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield _PING
                    continue
                if event is None:
                    return  # this client fell too far behind; it resumes from the stream with Last-Event-ID
                if after is not None and event_id_key(event.id) <= event_id_key(after):
                    continue  # already sent from the backlog
                if not event.snapshot.visible_to(owner):
                    continue
                yield _encode(event, first=first)
                first, after = False, event.id
    except RedisError:
        metrics.redis_error("events")
