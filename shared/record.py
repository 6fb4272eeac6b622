"""The task record: the one JSON document a client sees for a task run."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel

TaskState = Literal["queued", "running", "succeeded", "failed", "cancelled", "lost"]
# `lost`: the process running it died (or it ran out of attempts after workers died); its error says which.
TERMINAL_STATES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "lost"})


class AttemptError(BaseModel):
    """Why one attempt of a task ended without a result."""

    attempt: int
    error: str
    at: datetime


class Transition(BaseModel):
    """One entry of a record's `history`: the state entered, when, on which attempt and worker."""

    state: TaskState
    at: datetime
    attempt: int
    worker: str | None


class TaskRecord(BaseModel):
    """One run of a task, as stored in Redis and returned by the API."""

    id: str
    name: str
    state: TaskState
    progress: float
    message: str | None
    params: Any
    result: Any
    error: str | None
    executor: Literal["background", "celery"]
    worker: str | None  # "host:pid" (or Celery's "name@host:pid") of the process that ran it
    attempts: int
    attempt_errors: list[AttemptError]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    history: list[Transition] | None  # every state entered, oldest first (null only on records older than it)


RECORD_FIELDS: tuple[str, ...] = tuple(TaskRecord.model_fields)


def utc_now() -> datetime:
    return datetime.now(UTC)


def json_time(moment: datetime) -> str:
    """ISO 8601 UTC with a `Z`, as a JSON string literal (how the store keeps times)."""
    return '"' + moment.isoformat().replace("+00:00", "Z") + '"'
