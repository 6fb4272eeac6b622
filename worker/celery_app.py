"""The Celery app from the environment's settings: `celery -A worker.celery_app worker`."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import task_revoked, worker_ready
from celery.worker import state as worker_state

from shared.connection import process_name
from shared.logs import configure_logging
from shared.presence import ProcessInfo
from shared.routing import RoutingError
from shared.settings import get_settings
from shared.tasks import registry
from worker.factory import broker_warnings, make_celery, sweep_in_background
from worker.revocations import Revocations

settings = get_settings()
if not settings.redis_url:
    raise SystemExit("configuration error: REDIS_URL: the Celery worker needs the Redis the API uses")
configure_logging(settings)  # before the worker sets up logging, which then leaves the root logger to us
try:
    app = make_celery(settings, registry.load(settings.task_modules))
except RoutingError as exc:
    raise SystemExit(f"configuration error: {exc}") from None
for warning in broker_warnings(settings):
    logging.getLogger(__name__).warning(warning)


@worker_ready.connect
def _start_main_loop(sender: Any = None, **_: Any) -> None:
    """In the worker's main process, once it consumes: the sweeper, and revokes carried to the store."""
    queues = sorted(queue.name for queue in sender.task_consumer.queues) if sender is not None else []
    hostname = str(getattr(sender, "hostname", "") or process_name())

    def describe() -> ProcessInfo:
        running = len(worker_state.active_requests)
        return ProcessInfo(hostname, "worker", ["celery"], queues, running, settings.sweep_interval)

    main = sweep_in_background(app, settings, describe)
    revocations = Revocations(main.store, main.loop)
    task_revoked.connect(revocations.on_revoked, weak=False)  # Celery sends it from this process only
    if sender is not None:  # Celery's timer: with prefork, on the consumer's event loop, which owns the requests
        sender.timer.call_repeatedly(settings.heartbeat_interval, revocations.stop_revoked_running)
