"""Every Redis key the status store uses, named in one place."""

from __future__ import annotations

PREFIX = "bgt"
INDEX = f"{PREFIX}:index"  # sorted set: task id scored by creation time (µs), for listing newest first


def task_key(task_id: str) -> str:
    """The hash holding one task run's record."""
    return f"{PREFIX}:task:{task_id}"
