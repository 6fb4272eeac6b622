"""The Python client (`client/`) against live APIs on both executors, plus the answers a live API rarely gives
(503, 507, a stream that is not one) from `httpx.MockTransport`."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import httpx
import pytest

from client import (
    AsyncClient,
    Client,
    Conflict,
    InvalidRequest,
    NotFound,
    TaskRecord,
    TaskTimeout,
    Unauthorized,
    Unavailable,
)
from client.follow import Follower
from tests.conftest import ALICE, BOB, LiveApi

UNKNOWN = "00000000-0000-4000-8000-000000000000"
slow = pytest.mark.slow  # the tests that talk to live processes


# --- the live API, both executors ------------------------------------------------------------------------------


@slow
def test_submit_get_and_wait_for_success(live_api: LiveApi) -> None:
    with Client(live_api.url) as api:
        task = api.submit("sleep", {"seconds": 0.5})
        assert task.state == "queued"
        assert task.executor == live_api.executor
        assert api.get(task.id).id == task.id
        final = api.wait(task.id, timeout=30)
    assert final.state == "succeeded"
    assert final.result == {"slept": 0.5}
    assert final.progress == 1.0


@slow
def test_follow_yields_each_change_in_order_until_the_end(live_api: LiveApi) -> None:
    with Client(live_api.url) as api:
        task = api.submit("sleep", {"seconds": 1.0})
        seen = list(api.follow(task.id, timeout=30))
    assert seen[-1].state == "succeeded"
    assert "running" in [record.state for record in seen]
    assert [record.progress for record in seen] == sorted(record.progress for record in seen)
    assert len({record.progress for record in seen}) >= 3  # the bar moved on the way
    assert all(earlier != later for earlier, later in pairwise(seen))  # only news


@slow
def test_a_failing_task_ends_failed_with_its_error(live_api: LiveApi) -> None:
    with Client(live_api.url) as api:
        final = api.wait(api.submit("fail", {"message": "disk on fire"}).id, timeout=30)
    assert final.state == "failed"
    assert final.error == "RuntimeError: disk on fire"


@slow
def test_cancelling_a_running_task_ends_it_cancelled(live_api: LiveApi) -> None:
    with Client(live_api.url) as api:
        task = api.submit("sleep", {"seconds": 600})
        running = next(record for record in api.follow(task.id, timeout=30) if record.state == "running")
        stopping = api.cancel(running.id)
        assert stopping.state == "running"  # 202: asked to stop
        final = api.wait(task.id, timeout=30)
        assert final.state == "cancelled"
        with pytest.raises(Conflict) as ended:
            api.cancel(task.id)
    assert ended.value.status == 409
    assert "already finished" in str(ended.value.detail)


@slow
def test_list_walks_every_page(live_api: LiveApi) -> None:
    recording = Recording()
    with Client(live_api.url, transport=recording) as api:
        ours = [api.submit("noop", {"value": n}).id for n in range(5)]
        for task_id in ours:
            assert api.wait(task_id, timeout=30).state == "succeeded"
        listed = list(api.list(name="noop", state="succeeded", limit=2))
    pages = [request for request in recording.requests if request.url.path == "/tasks"]
    ids = [record.id for record in listed]
    assert len(ids) == len(set(ids))  # no page repeated
    assert [task_id for task_id in ids if task_id in ours] == ours[::-1]  # all of them, newest first
    assert all(record.name == "noop" and record.state == "succeeded" for record in listed)
    assert (len(ids) + 1) // 2 <= len(pages) <= len(ids) // 2 + 1  # page by page, to the one without a next cursor
    assert all("cursor" in request.url.params for request in pages[1:])


@slow
def test_an_idempotency_key_replays_the_same_body_and_refuses_another(live_api: LiveApi) -> None:
    key = f"order-{uuid.uuid4()}"
    with Client(live_api.url) as api:
        first = api.submit("noop", {"value": 1}, idempotency_key=key)
        again = api.submit("noop", {"value": 1}, idempotency_key=key)
        with pytest.raises(Conflict):
            api.submit("noop", {"value": 2}, idempotency_key=key)
    assert again.id == first.id


@slow
def test_what_does_not_exist_is_not_found_and_bad_parameters_are_invalid(live_api: LiveApi) -> None:
    with Client(live_api.url) as api:
        for call in (api.get, api.cancel, lambda task_id: api.wait(task_id, timeout=10)):
            with pytest.raises(NotFound) as missing:
                call(UNKNOWN)
            assert missing.value.status == 404
        with pytest.raises(NotFound):
            api.submit("no_such_task", {})
        with pytest.raises(InvalidRequest) as invalid:
            api.submit("cpu", {"rounds": 0})
    assert invalid.value.status == 422
    assert invalid.value.detail[0]["loc"][-1] == "rounds"  # FastAPI's list of problems, as it sent it


@slow
def test_wait_gives_up_in_time_and_the_task_goes_on(live_api: LiveApi) -> None:
    with Client(live_api.url) as api:
        task = api.submit("sleep", {"seconds": 600})
        started = time.monotonic()
        with pytest.raises(TaskTimeout) as late:
            api.wait(task.id, timeout=1.0)
        took = time.monotonic() - started
        assert late.value.task_id == task.id
        assert late.value.last is not None
        assert late.value.last.state in ("queued", "running")
        api.cancel(task.id)
        assert api.wait(task.id, timeout=30).state == "cancelled"
    assert 1.0 <= took < 2.5


@slow
def test_wait_resumes_a_dropped_stream_after_the_last_event(live_api: LiveApi) -> None:
    cutter = CutFirstStream()
    with Client(live_api.url, transport=cutter) as api:
        task = api.submit("sleep", {"seconds": 1.0})
        seen = list(api.follow(task.id, timeout=30))
    assert seen[-1].state == "succeeded"
    assert cutter.cut_after_id is not None
    assert cutter.last_event_ids[:2] == [None, cutter.cut_after_id]  # reopened after the one event it had
    assert len({record.model_dump_json() for record in seen}) == len(seen)  # nothing twice


@slow
@pytest.mark.parametrize("broken", ["502", "html"])
def test_wait_falls_back_to_long_poll_when_the_stream_fails(live_api: LiveApi, broken: str) -> None:
    transport = NoStream(broken)
    with Client(live_api.url, transport=transport) as api:
        task = api.submit("sleep", {"seconds": 3.0})  # still running once the stream has been given up
        final = api.wait(task.id, timeout=30)
    assert final.state == "succeeded"
    assert transport.streams == (3 if broken == "502" else 1)  # a failing stream is tried again, a non-stream not
    assert transport.long_polls  # the rest was long-polls, each sent with the ETag it had
    assert all(request.headers.get("if-none-match") for request in transport.long_polls)


@slow
@pytest.mark.anyio
async def test_the_async_client_does_the_same(live_api: LiveApi) -> None:
    async with AsyncClient(live_api.url) as api:
        done = await api.submit("sleep", {"seconds": 0.5})
        assert (await api.get(done.id)).id == done.id
        seen = [record async for record in api.follow(done.id, timeout=30)]
        assert seen[-1].state == "succeeded"
        assert (await api.wait(done.id, timeout=30)).result == {"slept": 0.5}

        failed = await api.wait((await api.submit("fail", {"message": "boom"})).id, timeout=30)
        assert failed.error == "RuntimeError: boom"

        long = await api.submit("sleep", {"seconds": 600})
        with pytest.raises(TaskTimeout):
            await api.wait(long.id, timeout=0.5)
        await api.cancel(long.id)
        assert (await api.wait(long.id, timeout=30)).state == "cancelled"

        found: set[str] = set()
        async with aclosing(api.list(name="sleep", limit=2)) as listed:
            async for record in listed:
                found.add(record.id)
                if {long.id, done.id} <= found:
                    break
        assert {long.id, done.id} <= found
        with pytest.raises(NotFound):
            await api.get(UNKNOWN)
        key = f"async-{uuid.uuid4()}"
        assert (await api.submit("noop", {}, idempotency_key=key)).id == (
            await api.submit("noop", {}, idempotency_key=key)
        ).id
        with pytest.raises(Conflict):
            await api.submit("noop", {"value": 1}, idempotency_key=key)


@slow
@pytest.mark.anyio
async def test_the_async_client_resumes_a_dropped_stream(follow_celery: LiveApi) -> None:
    cutter = AsyncCutFirstStream()
    async with AsyncClient(follow_celery.url, transport=cutter) as api:
        task = await api.submit("sleep", {"seconds": 1.0})
        final = await api.wait(task.id, timeout=30)
    assert final.state == "succeeded"
    assert cutter.cut_after_id is not None
    assert cutter.last_event_ids[:2] == [None, cutter.cut_after_id]


@slow
def test_an_api_key_is_sent_and_a_missing_one_is_unauthorized(secured_api: str) -> None:
    with Client(secured_api, api_key=ALICE["X-API-Key"]) as alice:
        task = alice.submit("noop", {"value": "mine"})
        assert alice.wait(task.id, timeout=30).result == {"value": "mine"}
        assert task.id in [record.id for record in alice.list(name="noop")]
    with Client(secured_api) as nobody:
        for call in (nobody.get, lambda task_id: nobody.wait(task_id, timeout=10)):
            with pytest.raises(Unauthorized) as refused:
                call(task.id)
            assert refused.value.status == 401
    with Client(secured_api, api_key=BOB["X-API-Key"]) as bob, pytest.raises(NotFound):
        bob.get(task.id)  # another key's task looks like no task at all


# --- answers from a mock API --------------------------------------------------------------------------------------


def test_unavailable_carries_retry_after() -> None:
    later = {"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"}
    answers = {
        "/tasks/a": httpx.Response(503, json={"detail": "Redis is unavailable"}, headers={"Retry-After": "7"}),
        "/tasks/b": httpx.Response(507, json={"detail": "full"}, headers=later),
        "/tasks/c": httpx.Response(503, text="Service Unavailable"),
        "/tasks/d": httpx.Response(413, json={"detail": "request body larger than 10 bytes"}),
    }
    with Client(transport=httpx.MockTransport(lambda request: answers[request.url.path])) as api:
        with pytest.raises(Unavailable) as down:
            api.get("a")
        assert (down.value.status, down.value.retry_after) == (503, 7.0)
        assert str(down.value) == "HTTP 503: Redis is unavailable"
        with pytest.raises(Unavailable) as full:
            api.get("b")
        assert full.value.status == 507
        assert full.value.retry_after is not None
        assert full.value.retry_after > 3600
        with pytest.raises(Unavailable) as bare:
            api.get("c")
        assert (bare.value.retry_after, bare.value.detail) == (None, "Service Unavailable")
        with pytest.raises(InvalidRequest):
            api.get("d")


def test_follow_waits_out_a_503_then_reads_the_stream_and_a_204_ends_it() -> None:
    server = ScriptedStream(
        [
            httpx.Response(503, json={"detail": "down"}, headers={"Retry-After": "0"}),
            sse_response([("v1", record("running", 0.5))]),  # then the connection ends early
            httpx.Response(204),  # nothing after v1, and it has ended since
        ],
        final=record("succeeded", 1.0),
    )
    with Client(transport=httpx.MockTransport(server)) as api:
        seen = list(api.follow("t1", timeout=10))
    assert [(r.state, r.progress) for r in seen] == [("running", 0.5), ("succeeded", 1.0)]
    assert server.last_event_ids == [None, None, "v1"]  # opaque ids, sent back as they came


def test_an_unauthorized_stream_is_not_retried() -> None:
    server = ScriptedStream([httpx.Response(401, json={"detail": "missing or invalid API key (X-API-Key header)"})])
    with Client(transport=httpx.MockTransport(server)) as api, pytest.raises(Unauthorized):
        api.wait("t1", timeout=10)
    assert server.last_event_ids == [None]


def test_a_quiet_stream_is_reopened_at_once_after_its_last_event() -> None:
    quiet = sse_response([("v1", record("running", 0.5))], then=httpx.ReadTimeout("nothing for 10 s"))
    server = ScriptedStream([quiet, sse_response([("v2", record("succeeded", 1.0))])])
    started = time.monotonic()
    with Client(transport=httpx.MockTransport(server)) as api:
        final = api.wait("t1", timeout=10)
    assert final.state == "succeeded"
    assert server.last_event_ids == [None, "v1"]
    assert time.monotonic() - started < 0.4  # a quiet stream is no failure: no back-off


def test_failures_back_off_then_give_the_stream_up_then_give_up() -> None:
    follower = Follower("t1", timeout=None)
    down = httpx.ConnectError("refused")
    assert follower.next_call().stream
    assert [follower.failed(down), follower.failed(down)] == [0.5, 1.0]
    assert follower.failed(down) == 0.0  # the third in a row: the long-poll takes over at once
    assert not follower.next_call().stream
    assert [follower.failed(down) for _ in range(7)] == [2.0, 2.5, 3.0, 3.0, 3.0, 3.0, 3.0]
    with pytest.raises(httpx.ConnectError):
        follower.failed(down)  # the eleventh


def test_follow_keeps_the_deadline_on_a_quiet_stream() -> None:
    clock = FakeClock()
    follower = Follower("t1", timeout=25, clock=clock)
    assert follower.next_call().read_timeout == 10.0  # never longer than a quiet stream is trusted
    clock.now = 16.0
    assert follower.keep_reading()  # 9 s left: a read of 10 s would overrun by 1 s at most...
    clock.now = 21.0
    assert not follower.keep_reading()  # ...and with 4 s left it is reopened,
    assert follower.next_call().read_timeout == pytest.approx(4.0)  # with a read timeout of what is left
    clock.now = 25.0
    with pytest.raises(TaskTimeout):
        follower.next_call()


# --- helpers ------------------------------------------------------------------------------------------------------


class Recording(httpx.HTTPTransport):
    """A real transport that keeps every request it sent."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return super().handle_request(request)


def _first_event(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The bytes of a stream up to the end of its first event (a blank line), then a dropped connection."""
    seen = b""
    for chunk in chunks:
        seen += chunk
        if b"\n\n" in seen:
            yield seen[: seen.index(b"\n\n") + 2]
            raise httpx.ReadError("connection cut by the test")
    yield seen


def _event_id(block: bytes) -> str | None:
    for line in block.decode().splitlines():
        if line.startswith("id:"):
            return line[3:].strip()
    return None


class CutFirstStream(Recording):
    """Passes everything to the live API, except that the first event stream drops after its first event."""

    def __init__(self) -> None:
        super().__init__()
        self.last_event_ids: list[str | None] = []
        self.cut_after_id: str | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if not request.url.path.endswith("/events"):
            return response
        self.last_event_ids.append(request.headers.get("last-event-id"))
        if len(self.last_event_ids) > 1:
            return response
        stream = response.stream
        assert isinstance(stream, httpx.SyncByteStream)

        def cut() -> Iterator[bytes]:
            for block in _first_event(iter(stream)):
                self.cut_after_id = _event_id(block)
                yield block

        return httpx.Response(response.status_code, headers=response.headers, stream=_Chunks(cut(), stream))


class _Chunks(httpx.SyncByteStream):
    def __init__(self, chunks: Iterator[bytes], inner: httpx.SyncByteStream) -> None:
        self.chunks, self.inner = chunks, inner

    def __iter__(self) -> Iterator[bytes]:
        return self.chunks

    def close(self) -> None:
        self.inner.close()


class AsyncCutFirstStream(httpx.AsyncHTTPTransport):
    """`CutFirstStream` for the async client."""

    def __init__(self) -> None:
        super().__init__()
        self.last_event_ids: list[str | None] = []
        self.cut_after_id: str | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if not request.url.path.endswith("/events"):
            return response
        self.last_event_ids.append(request.headers.get("last-event-id"))
        if len(self.last_event_ids) > 1:
            return response
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)

        async def cut() -> AsyncIterator[bytes]:
            seen = b""
            async for chunk in stream:
                seen += chunk
                if b"\n\n" in seen:
                    block = seen[: seen.index(b"\n\n") + 2]
                    self.cut_after_id = _event_id(block)
                    yield block
                    raise httpx.ReadError("connection cut by the test")

        return httpx.Response(response.status_code, headers=response.headers, stream=_AsyncChunks(cut(), stream))


class _AsyncChunks(httpx.AsyncByteStream):
    def __init__(self, chunks: AsyncIterator[bytes], inner: httpx.AsyncByteStream) -> None:
        self.chunks, self.inner = chunks, inner

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.chunks

    async def aclose(self) -> None:
        await self.inner.aclose()


class NoStream(Recording):
    """The live API behind something that breaks its event stream: a 502 each time, or a page that is not SSE."""

    def __init__(self, broken: str) -> None:
        super().__init__()
        self.broken = broken
        self.streams = 0
        self.long_polls: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            self.streams += 1
            if self.broken == "502":
                return httpx.Response(502, text="Bad Gateway")
            return httpx.Response(200, html="<html>the proxy's page</html>")
        if "wait" in request.url.params:
            self.long_polls.append(request)
        return super().handle_request(request)


def record(state: str, progress: float) -> str:
    now = datetime.now(UTC)
    fields: dict[str, Any] = {
        "id": "t1",
        "name": "sleep",
        "state": state,
        "progress": progress,
        "message": None,
        "params": {"seconds": 1},
        "result": {"slept": 1} if state == "succeeded" else None,
        "error": None,
        "executor": "background",
        "worker": "h:1",
        "attempts": 1,
        "attempt_errors": [],
        "created_at": now,
        "started_at": now,
        "finished_at": now if state == "succeeded" else None,
        "history": None,
    }
    return TaskRecord.model_validate(fields).model_dump_json()


def sse_response(events: list[tuple[str, str]], then: Exception | None = None) -> httpx.Response:
    """A stream of these events that ends, or raises `then` after them."""
    body = "".join(f"id: {event_id}\nevent: progress\ndata: {data}\n\n" for event_id, data in events).encode()
    return httpx.Response(200, headers={"Content-Type": "text/event-stream"}, stream=_Then(body, then))


class _Then(httpx.SyncByteStream):
    def __init__(self, body: bytes, then: Exception | None) -> None:
        self.body, self.then = body, then

    def __iter__(self) -> Iterator[bytes]:
        yield self.body
        if self.then is not None:
            raise self.then


class ScriptedStream:
    """A mock API: the event stream answers from a script, one answer per connection; a read gets `final`."""

    def __init__(self, streams: list[httpx.Response], final: str | None = None) -> None:
        self.streams, self.final = streams, final
        self.last_event_ids: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            self.last_event_ids.append(request.headers.get("last-event-id"))
            return self.streams.pop(0)
        assert self.final is not None, f"unexpected {request.method} {request.url}"
        return httpx.Response(200, text=self.final, headers={"ETag": '"e1"', "Content-Type": "application/json"})


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now
