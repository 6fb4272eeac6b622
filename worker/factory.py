"""Build the Celery app: one Celery task per registered task, each a thin call into the shared runner.

Celery is only the transport here. Results, progress and errors live in our status store, so Celery's
result backend stays off, and only JSON crosses the broker. Delivery is at-least-once (late acks,
re-queued when a worker process dies) and the store's compare-and-set claim makes it run-once.

A running task is kept alive by its lease, not by its unacknowledged message: a worker that died while
running it is found by the sweeper. The message only covers the moment between delivery and start, so
Celery may re-deliver a message held for CELERY_VISIBILITY_TIMEOUT (a duplicate of a task that runs or
ended is refused by the claim).

Each Celery task still ends the way its record did (worker/outcome.py), so that Celery's events, its log
and Flower agree with the store; revokes reach the store through worker/revocations.py.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
from celery import Celery, Task
from celery.exceptions import Reject

from shared.connection import client_factory, make_runner, make_sweeper, open_store, process_name
from shared.logs import task_logging
from shared.presence import ProcessInfo
from shared.routing import celery_queues, resolve
from shared.runner import Runner
from shared.settings import Settings
from shared.snapshot import Snapshot
from shared.store import STORE_ERRORS, Requeue, StatusStore
from shared.sweeper import Requeuer
from shared.tasks import TaskRegistry
from worker.outcome import TaskFailed, end_as_stored

log = logging.getLogger(__name__)

_REQUEUE_PAUSE = 2.0  # seconds a worker waits before giving back a message it could not claim
_REQUEST = "worker.outcome:StoreRequest"  # Celery's request, announcing a cancelled run as revoked


def make_celery(settings: Settings, tasks: TaskRegistry) -> Celery:
    app = Celery("background_tasks", broker=settings.broker_url)
    if str(settings.broker_url).startswith(("redis://", "rediss://")):
        app.conf.broker_transport = "worker.transport:Transport"  # survives a full Redis
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
        # A task whose record ended failed raises (worker/outcome.py): ack it all the same, never re-deliver it.
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        # Keep running through a broker blip; a re-delivered duplicate is refused by the store's claim.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # A channel error is a reconnect, not the end of the worker: a Sentinel failover unblocks BRPOP with
        # an error, RabbitMQ closes a channel whose delivery outlived its consumer_timeout.
        broker_channel_error_retry=True,
        # Task events for monitors (Flower) from the start; Flower can also switch them on remotely.
        worker_send_task_events=settings.celery_task_events,
        broker_transport_options={
            **settings.broker_options,
            "visibility_timeout": settings.celery_visibility_timeout,
            "unacked_restore_throttle": 1,  # look for messages to re-deliver every 10 s, not every 100 s
        },
    )
    # Each task's queue (Celery's own routing: the API's send_task and a worker's `-Q` both follow it).
    app.conf.task_routes = {name: {"queue": queue} for name, queue in celery_queues(resolve(settings, tasks)).items()}
    for spec in tasks:
        entry = _entry_point(spec.name, settings, tasks)
        app.task(name=spec.name, bind=True, shared=False, throws=(TaskFailed,), Request=_REQUEST)(entry)
    return app


RABBITMQ_CONSUMER_TIMEOUT = 1800  # seconds: RabbitMQ's default `consumer_timeout`


def broker_warnings(settings: Settings) -> list[str]:
    """What the worker says at start-up about a broker setting it cannot read but depends on.

    Messages are acknowledged after the run (late acks), and RabbitMQ closes a channel whose delivery stays
    unacknowledged longer than its `consumer_timeout` (30 min unless configured; per queue only from 3.12),
    which no client can read. The worker then reconnects (`broker_channel_error_retry`) and the task goes
    on, but its message comes back as a duplicate and its ack fails: set the timeout above the longest task.
    """
    broker = str(settings.broker_url or "")
    if broker.startswith(("amqp://", "amqps://", "pyamqp://")) and settings.task_time_limit > RABBITMQ_CONSUMER_TIMEOUT:
        return [
            f"TASK_TIME_LIMIT is {settings.task_time_limit:g} s but RabbitMQ closes a channel whose message is not "
            f"acknowledged within its consumer_timeout ({RABBITMQ_CONSUMER_TIMEOUT} s by default): set "
            f"consumer_timeout = {int(settings.task_time_limit + 60) * 1000} in rabbitmq.conf (or a consumer-timeout "
            "policy on RabbitMQ 3.12+), or lower TASK_TIME_LIMIT"
        ]
    return []


async def send(app: Celery, task_id: str, name: str, params_json: str, owner: str, *, eager: bool = False) -> None:
    """Publish one task message; the Celery task id is the record's id."""
    from api.executors import message_kwargs

    kwargs = message_kwargs(owner, eager=eager)
    await anyio.to_thread.run_sync(partial(app.send_task, name, args=[params_json], kwargs=kwargs, task_id=task_id))


def requeuer(app: Celery) -> Requeuer:
    async def requeue(job: Requeue) -> None:
        await send(app, job.task_id, job.name, job.params_json, job.owner, eager=True)

    return requeue


class _ThreadRuntime(threading.local):
    """One event loop and one store per worker thread (prefork child, thread pool or solo), kept warm."""

    loop: asyncio.Runner | None = None
    runner: Runner | None = None


_runtime = _ThreadRuntime()


def _entry_point(name: str, settings: Settings, tasks: TaskRegistry) -> Callable[..., None]:
    def run(self: Task[Any, Any], params_json: str, owner: str = "", eager: bool = False) -> None:
        if _runtime.loop is None or _runtime.runner is None:
            _runtime.loop = asyncio.Runner()
            node = process_name(self.request.hostname)
            clients = client_factory(settings)
            runner = make_runner(
                settings, open_store(settings, clients()), tasks, worker=node, optimistic="retryable", clients=clients
            )
            _runtime.runner = runner
        task_id = str(self.request.id)
        # A re-delivered message may be a run that began and died: claim before running, so it counts.
        redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
        with task_logging(task_id):  # the run gets a copy of this context (asyncio.Runner would reuse its first)
            job = _runtime.runner.run(task_id, name, params_json, owner, eager=eager or redelivered)
            state = _run_or_requeue(_runtime.loop, job, task_id)
            end_as_stored(task_id, state, partial(_read_record, _runtime.loop, _runtime.runner.store, task_id))

    run.__name__ = name
    return run


def _run_or_requeue(loop: asyncio.Runner, job: Coroutine[Any, Any, str | None], task_id: str) -> str | None:
    """Run it; if the store cannot be reached to claim it, give the message back instead of dropping it.

    The runner raises a Redis error only before the body ran (a claim); every later write is retried. So
    the message is put back on the queue, for this or another worker to try again once Redis answers.
    """
    try:
        return loop.run(job, context=contextvars.copy_context())
    except STORE_ERRORS as exc:
        log.warning("task %s: the status store is unreachable, message returned to the queue: %s", task_id, exc)
        time.sleep(_REQUEUE_PAUSE)  # do not spin on a message while Redis is down
        raise Reject(f"status store unreachable: {type(exc).__name__}", requeue=True) from None


def _read_record(loop: asyncio.Runner, store: StatusStore, task_id: str) -> Snapshot | None:
    """The record after the run, for Celery's copy of its end. The outcome is stored already: a Redis error
    only costs that copy's detail, and must not send the message back to the queue."""
    try:
        return loop.run(store.read(task_id))
    except STORE_ERRORS as exc:
        log.warning("task %s: the record could not be read for Celery's view of its end: %s", task_id, exc)
        return None


@dataclass(frozen=True)
class MainLoop:
    """The worker main process's own event loop (in a daemon thread) and the store used there: the sweeper
    runs on it, and revokes are handed to it, so that Celery's consumer never waits on Redis."""

    loop: asyncio.AbstractEventLoop
    store: StatusStore
    sweeping: concurrent.futures.Future[None]


def sweep_in_background(app: Celery, settings: Settings, describe: Callable[[], ProcessInfo]) -> MainLoop:
    """The worker's sweeper (and its report for the workers panel), on the main process's own loop."""
    loop = asyncio.new_event_loop()
    store = open_store(settings)
    threading.Thread(target=loop.run_forever, name="bgt-sweeper", daemon=True).start()
    sweeper = make_sweeper(settings, store, requeuer(app), describe)
    return MainLoop(loop, store, asyncio.run_coroutine_threadsafe(sweeper.run_forever(), loop))
