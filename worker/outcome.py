"""Celery's own view of a run agrees with the record: what Flower, Celery's events and its log say.

The body's outcome lives in the status store, so a Celery task that only called the runner would return
normally, and read SUCCESS, whatever happened. The entry point ends it the way the state stored says,
with no result backend and without running anything again (Celery 5.7, `app/trace.py` and
`worker/request.py`):

- succeeded: it returns; Celery sends task-succeeded.
- failed or lost: it raises TaskFailed, carrying the record's error. Celery marks it FAILURE and sends
  task-failed with that error; with TaskFailed in the task's `throws`, its log says so once, at INFO,
  without a traceback (which would be the entry point's, not the task's). With late acks the message is
  acknowledged (`task_acks_on_failure_or_timeout`), so nothing is delivered again; there is no autoretry.
- cancelled: it raises TaskCancelled, an Ignore: the message is acknowledged and no outcome event is sent;
  then StoreRequest, in the worker's main process, sends the task-revoked event Celery's own revoke sends,
  which Flower shows as REVOKED.
- not run here (None: a duplicate delivery the claim refused, or an attempt no longer ours): a plain
  Ignore, acknowledged with no event at all, so the real run's state stands. Unless the record says
  `cancelled`: an attempt whose start was not written yet (optimistic) is refused when a DELETE cancelled
  the queued record meanwhile, and that run, too, is announced as revoked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery.exceptions import Ignore
from celery.worker.request import Request

from shared.snapshot import Snapshot

FAILED_STATES = frozenset({"failed", "lost"})


class TaskFailed(Exception):
    """The record ended `failed` or `lost`; the message is the record's error."""


class TaskCancelled(Ignore):
    """The record ended `cancelled`: no outcome of Celery's own, but a task-revoked event (StoreRequest)."""


class NotRunHere(Ignore):
    """This delivery did not run the task (the record's run is another one): Celery says nothing."""


def end_as_stored(task_id: str, state: str | None, read: Callable[[], Snapshot | None]) -> None:
    """Return for `succeeded`; raise what makes Celery end the task as the record did.

    `read`: the record now (None if it cannot be had), read only when the state alone does not tell.
    """
    if state == "succeeded":
        return
    if state in FAILED_STATES:
        record = read()
        error = record.text("error") if record is not None else "(the record could not be read)"
        raise TaskFailed(error or "(no error in the record)")
    if state is None:
        record = read()
        if record is None or record.state != "cancelled":
            raise NotRunHere(f"task {task_id} did not run on this delivery")
    raise TaskCancelled(f"task {task_id} was cancelled")


class StoreRequest(Request):
    """Celery's request, which also announces a run the record says was cancelled as revoked."""

    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False) -> None:
        super().on_failure(exc_info, send_failed_event, return_ok)  # an Ignore: acknowledged, no event
        exc = getattr(exc_info, "exception", None)
        exc = getattr(exc, "exc", exc)  # the pool hands it over wrapped (billiard's ExceptionWithTraceback)
        if isinstance(exc, TaskCancelled):
            # The fields Celery's own revoke sends (Request._announce_revoked); nothing was killed.
            self.send_event("task-revoked", terminated=False, signum=None, expired=False)
