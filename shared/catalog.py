"""One entry of `GET /catalog`: a task the API can start, and the JSON Schema of its parameters."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class TaskType(BaseModel):
    """Shared by the API that serves the catalog and the client that reads it."""

    name: str
    description: str
    params_schema: dict[str, Any]  # the JSON Schema of the task's parameters, as /docs shows it
    executor: str = "background"  # where it runs: "background" (in the API process) or "celery"
    queue: str | None = None  # its Celery queue, when it runs on Celery
