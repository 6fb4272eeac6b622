"""The Celery app from the environment's settings: `celery -A worker.celery_app worker`."""

from __future__ import annotations

from shared.settings import get_settings
from shared.tasks import registry
from worker.factory import make_celery

settings = get_settings()
if not settings.redis_url:
    raise SystemExit("configuration error: REDIS_URL: the Celery worker needs the Redis the API uses")
app = make_celery(settings, registry.load(settings.task_modules))
