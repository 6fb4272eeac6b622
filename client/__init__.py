"""A Python client of the background-tasks API: `Client` for blocking code, `AsyncClient` for async code.

    with Client("http://127.0.0.1:8000", api_key=None) as api:
        task = api.submit("sleep", {"seconds": 2})
        print(api.wait(task.id, timeout=30).result)

Records are the project's `TaskRecord`; the API's error answers are the `ApiError` subclasses below, and
network failures stay httpx's `httpx.TransportError`.
"""

from client.aio import AsyncClient
from client.errors import ApiError, Conflict, InvalidRequest, NotFound, TaskTimeout, Unauthorized, Unavailable
from client.sync import Client
from shared.catalog import TaskType
from shared.record import TERMINAL_STATES, TaskRecord, TaskState

__all__ = [
    "TERMINAL_STATES",
    "ApiError",
    "AsyncClient",
    "Client",
    "Conflict",
    "InvalidRequest",
    "NotFound",
    "TaskRecord",
    "TaskState",
    "TaskTimeout",
    "TaskType",
    "Unauthorized",
    "Unavailable",
]
