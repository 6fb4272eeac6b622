"""Following one task to its end, decided once for both clients: what to send next and what each answer means.

The event stream (`GET /tasks/{id}/events`) is the way: every change arrives as it happens. A stream that drops
is reopened with `Last-Event-ID` set to the id of the last event received, which is kept as an opaque string
(its format is the server's business). When the stream cannot be had — its route refuses, something in between
does not stream, or it keeps failing — the long-poll (`GET /tasks/{id}?wait=N` with `If-None-Match`, whose
ETag is opaque too) takes over for the rest of the follow.

Time is kept with read timeouts, as a sync client has no other way to stop a blocked read: a stream is opened
with a read timeout of at most the time left (and STREAM_IDLE), and reopened with a shorter one once the time
left falls under half of it; a long-poll holds for at most the time left. A follow whose task goes quiet thus
ends on time, and one whose last event came just before its deadline at most half a read timeout late (< 5 s).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from httpx_sse import ServerSentEvent, SSEError

from client.calls import Call, record, segment
from client.errors import ApiError, TaskTimeout, Unauthorized, Unavailable
from shared.record import TERMINAL_STATES, TaskRecord

STREAM_IDLE = 10.0  # the longest read on a stream: under the API's 15 s keepalive, so a quiet stream is reopened
LONG_POLL = 30.0  # how long one long-poll may be held (the API allows 60 s)
POLL_GRACE = 10.0  # read timeout of a long-poll beyond its hold
STREAM_TRIES = 3  # failures in a row before the event stream gives way to the long-poll
MAX_FAILURES = 10  # failures in a row (stream and long-poll together) before the last one is raised
_EVENT_KINDS = frozenset({"state", "progress"})
_TRANSIENT = frozenset({502, 503, 504, 507})


class StreamEnded(Exception):
    """The API closed the event stream before the task ended (it restarted, or lost Redis): reopen it."""


RETRIED = (httpx.TransportError, SSEError, ApiError, StreamEnded)  # what a follow goes through `Follower.failed`


class Follower:
    """Where following one task stands: the last record, event id and ETag, the failures in a row, the deadline."""

    def __init__(self, task_id: str, timeout: float | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.task_id = task_id
        self.last: TaskRecord | None = None
        self.polling = False  # the long-poll has taken over from the event stream
        self._clock = clock
        self._deadline = None if timeout is None else clock() + timeout
        self._event_id: str | None = None
        self._etag: str | None = None
        self._polled = False
        self._failures = 0
        self._read_timeout = STREAM_IDLE

    @property
    def done(self) -> bool:
        return self.last is not None and self.last.state in TERMINAL_STATES

    @property
    def final(self) -> TaskRecord:
        """The final record, once `done`."""
        if self.last is None or not self.done:
            raise RuntimeError(f"task {self.task_id} has not ended yet")
        return self.last

    def next_call(self) -> Call:
        """The request to send next: the stream, or a long-poll. Raises TaskTimeout once the time is up."""
        remaining = self._remaining()
        if remaining is not None and remaining <= 0:
            raise TaskTimeout(self.task_id, self.last)
        path = f"/tasks/{segment(self.task_id)}"
        if self.polling:
            return self._poll(path, remaining)
        self._read_timeout = STREAM_IDLE if remaining is None else min(STREAM_IDLE, remaining)
        headers = {"Last-Event-ID": self._event_id} if self._event_id is not None else None
        read_timeout = self._read_timeout
        return Call("GET", f"{path}/events", ok=(200, 204), headers=headers, read_timeout=read_timeout, stream=True)

    def _poll(self, path: str, remaining: float | None) -> Call:
        if not self._polled:  # what it is now, at once; then each change
            return Call("GET", path)
        hold = LONG_POLL if remaining is None else max(min(LONG_POLL, remaining), 0.001)
        headers = {"If-None-Match": self._etag} if self._etag is not None else None
        params = {"wait": f"{hold:.3f}"}
        return Call("GET", path, ok=(200, 304), params=params, headers=headers, read_timeout=hold + POLL_GRACE)

    def opened(self, response: httpx.Response) -> bool:
        """Whether to read events from this stream. A 204 says the task has ended: a plain read gets its record."""
        if response.status_code == 204:
            self.polling = True
            return False
        return True

    def event(self, sse: ServerSentEvent) -> TaskRecord | None:
        """The record an event brings, if it is news."""
        if sse.event not in _EVENT_KINDS:
            return None
        if sse.id:
            self._event_id = sse.id
        return self._news(TaskRecord.model_validate_json(sse.data))

    def keep_reading(self) -> bool:
        """Whether to go on reading the open stream: not once the task has ended, nor once the time left is under
        half the stream's read timeout (reopened with a shorter one, a quiet stream cannot outlast the deadline)."""
        if self.done:
            return False
        remaining = self._remaining()
        return remaining is None or remaining > self._read_timeout / 2

    def polled(self, response: httpx.Response) -> TaskRecord | None:
        """The record a (long-)poll brought, if it is news; None when it answered 304 (nothing changed)."""
        self._polled = True
        if response.status_code == 304:
            self._failures = 0
            return None
        self._etag = response.headers.get("etag")
        return self._news(record(response))

    def failed(self, error: Exception) -> float:
        """The seconds to pause after `error` before the next call; raises `error` again when trying again cannot
        help (a refused key, a task that is not there) or has failed MAX_FAILURES times in a row."""
        if isinstance(error, httpx.ReadTimeout) and not self.polling:
            return 0.0  # a quiet stream (or the deadline): reopened at once, or TaskTimeout
        self._failures += 1
        if isinstance(error, SSEError) or (isinstance(error, ApiError) and error.status not in _TRANSIENT):
            if self.polling or isinstance(error, Unauthorized):
                raise error
            self.polling = True  # a 404 too: the long-poll tells whether the task exists
            return 0.0
        if self._failures > MAX_FAILURES:
            raise error
        if not self.polling and self._failures >= STREAM_TRIES:
            self.polling = True
            return 0.0  # another route: nothing to wait for
        hint = error.retry_after if isinstance(error, Unavailable) else None
        pause = hint if hint is not None else min(0.5 * self._failures, 3.0)
        remaining = self._remaining()
        return pause if remaining is None else max(min(pause, remaining), 0.0)

    def _news(self, record: TaskRecord) -> TaskRecord | None:
        self._failures = 0
        if record == self.last:
            return None
        self.last = record
        return record

    def _remaining(self) -> float | None:
        return None if self._deadline is None else self._deadline - self._clock()
