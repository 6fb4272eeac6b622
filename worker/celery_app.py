"""The Celery app from the environment's settings: `celery -A worker.celery_app worker`."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_ready

from shared.logs import configure_logging
from shared.settings import get_settings
from shared.tasks import registry
from worker.factory import make_celery, sweep_in_background

settings = get_settings()
if not settings.redis_url:
    raise SystemExit("configuration error: REDIS_URL: the Celery worker needs the Redis the API uses")
configure_logging(settings)  # before the worker sets up logging, which then leaves the root logger to us
app = make_celery(settings, registry.load(settings.task_modules))


@worker_ready.connect
def _start_sweeper(**_: Any) -> None:
    sweep_in_background(app, settings)
