"""Every Redis key the status store uses, named in one place."""

from __future__ import annotations

PREFIX = "bgt"
INDEX = f"{PREFIX}:index"  # sorted set: task id scored by creation time (µs), for listing newest first
EVENTS = f"{PREFIX}:events"  # stream: a copy of the record after every change of any task (dashboards, wake-ups)
TASK_EVENTS_SUFFIX = ":events"  # the task's own stream is its record's key plus this (the Lua scripts derive it)


def task_key(task_id: str) -> str:
    """The hash holding one task run's record."""
    return f"{PREFIX}:task:{task_id}"


def task_events_key(task_id: str) -> str:
    """The stream of one task's changes, each entry a copy of its record; expires with the record."""
    return task_key(task_id) + TASK_EVENTS_SUFFIX
