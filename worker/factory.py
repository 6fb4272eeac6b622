"""Build the Celery app: one Celery task per registered task, each a thin call into the shared runner.

Celery is only the transport here. Results, progress and errors live in our status store, so Celery's
result backend stays off, and only JSON crosses the broker.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from typing import Any

from celery import Celery, Task

from shared.connection import make_runner, open_store, process_name
from shared.logs import task_logging
from shared.runner import Runner
from shared.settings import Settings
from shared.tasks import TaskRegistry


def make_celery(settings: Settings, tasks: TaskRegistry) -> Celery:
    app = Celery("background_tasks", broker=settings.broker_url)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        event_serializer="json",
        result_accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    for spec in tasks:
        app.task(name=spec.name, bind=True)(_entry_point(spec.name, settings, tasks))
    return app


class _ThreadRuntime(threading.local):
    """One event loop and one store per worker thread (prefork child, thread pool or solo), kept warm."""

    loop: asyncio.Runner | None = None
    runner: Runner | None = None


_runtime = _ThreadRuntime()


def _entry_point(name: str, settings: Settings, tasks: TaskRegistry) -> Callable[[Task[Any, Any], str], None]:
    def run(self: Task[Any, Any], params_json: str) -> None:
        if _runtime.loop is None or _runtime.runner is None:
            _runtime.loop = asyncio.Runner()
            node = process_name(self.request.hostname)
            _runtime.runner = make_runner(settings, open_store(settings), tasks, worker=node)
        task_id = str(self.request.id)
        with task_logging(task_id):  # the run gets a copy of this context (asyncio.Runner would reuse its first)
            _runtime.loop.run(_runtime.runner.run(task_id, name, params_json), context=contextvars.copy_context())

    run.__name__ = name
    return run
