"""Every Redis key the status store uses, named in one place."""

from __future__ import annotations

PREFIX = "bgt"
# Sorted set of task ids whose owner must act by the score (epoch seconds): running tasks' heartbeats, and
# tasks waiting on a process that may die (queued in-process, or re-queued for Celery). The sweeper reads it.
LEASES = f"{PREFIX}:leases"
EVENTS = f"{PREFIX}:events"  # stream: a copy of the record after every change of any task (dashboards, wake-ups)
TASK_EVENTS_SUFFIX = ":events"  # the task's own stream is its record's key plus this (the Lua scripts derive it)


def task_key(task_id: str) -> str:
    """The hash holding one task run's record."""
    return f"{PREFIX}:task:{task_id}"


def index_key(owner: str) -> str:
    """Sorted set of the owner's task ids scored by creation time (µs), for listing newest first."""
    return f"{PREFIX}:index:{owner}" if owner else f"{PREFIX}:index"


def idempotency_key(owner: str, key: str) -> str:
    """The task id (and request fingerprint) an Idempotency-Key maps to."""
    return f"{PREFIX}:idem:{owner}:{key}"


def task_events_key(task_id: str) -> str:
    """The stream of one task's changes, each entry a copy of its record; expires with the record."""
    return task_key(task_id) + TASK_EVENTS_SUFFIX
