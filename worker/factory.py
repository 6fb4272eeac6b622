"""Build the Celery app: one Celery task per registered task, each a thin call into the shared runner.

Celery is only the transport here. Results, progress and errors live in our status store, so Celery's
result backend stays off, and only JSON crosses the broker. Delivery is at-least-once (late acks,
re-queued when a worker process dies) and the store's compare-and-set start makes it run-once.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import anyio
from celery import Celery, Task

from shared.connection import make_runner, make_sweeper, open_store, process_name
from shared.logs import task_logging
from shared.runner import Runner
from shared.settings import Settings
from shared.store import Requeue
from shared.sweeper import Requeuer
from shared.tasks import TaskRegistry

log = logging.getLogger(__name__)


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
        # Ack after the run, and put the message back if the process running it dies.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # Keep running through a broker blip; a re-delivered duplicate is refused by the store's start.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
    )
    for spec in tasks:
        app.task(name=spec.name, bind=True, shared=False)(_entry_point(spec.name, settings, tasks))
    return app


async def send(app: Celery, task_id: str, name: str, params_json: str) -> None:
    """Publish one task message; the Celery task id is the record's id."""
    await anyio.to_thread.run_sync(partial(app.send_task, name, args=[params_json], task_id=task_id))


def requeuer(app: Celery) -> Requeuer:
    async def requeue(job: Requeue) -> None:
        await send(app, job.task_id, job.name, job.params_json)

    return requeue


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


def sweep_in_background(app: Celery, settings: Settings) -> threading.Thread:
    """The worker's sweeper: a daemon thread with its own event loop, in the worker's main process."""

    def sweep_forever() -> None:
        asyncio.run(make_sweeper(settings, open_store(settings), requeuer(app)).run_forever())

    thread = threading.Thread(target=sweep_forever, name="bgt-sweeper", daemon=True)
    thread.start()
    return thread
