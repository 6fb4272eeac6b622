"""Structured logs: every line written while a task is being handled carries its id as `task_id`.

The id lives in a context variable, so it follows the task into `await`s and into worker threads (anyio
copies the context), and reaches lines written by the task's own code, the runner and the store alike.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

from shared.settings import Settings

current_task_id: ContextVar[str | None] = ContextVar("current_task_id", default=None)

_TEXT = "%(asctime)s %(levelname)s %(name)s task_id=%(task_id)s %(message)s"
_JSON = "%(asctime)s %(levelname)s %(name)s %(task_id)s %(message)s"


@contextmanager
def task_logging(task_id: str) -> Iterator[None]:
    """Within the block, every log line names this task."""
    token = current_task_id.set(task_id)
    try:
        yield
    finally:
        current_task_id.reset(token)


class TaskIdFilter(logging.Filter):
    """Adds `task_id` to each record: the bound one, or the id Celery passes in its own log arguments."""

    def __init__(self, missing: str | None) -> None:
        super().__init__()
        self.missing = missing  # what a line about no task shows

    def filter(self, record: logging.LogRecord) -> bool:
        task_id = current_task_id.get()
        if task_id is None and isinstance(record.args, Mapping):
            found = record.args.get("id")
            task_id = found if isinstance(found, str) else None
        record.task_id = task_id if task_id is not None else self.missing
        return True


class _OurHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler this module installed, so configuring twice replaces it instead of adding one."""


def configure_logging(settings: Settings) -> None:
    """Send the root logger's lines to stderr, as text or JSON, each with `task_id`."""
    handler = _OurHandler(sys.stderr)
    handler.addFilter(TaskIdFilter(None if settings.log_format == "json" else "-"))
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter(_JSON, rename_fields={"levelname": "level", "name": "logger"}))
    else:
        handler.setFormatter(logging.Formatter(_TEXT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
