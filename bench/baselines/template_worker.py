"""Template-style, the worker side: a Celery app with Redis as broker and result backend.

celery -A bench.baselines.template_worker worker
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery

from bench.baselines.work import digest

celery = Celery(
    "template",
    broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"),
    backend=os.environ.get("CELERY_RESULT_BACKEND", "redis://127.0.0.1:6379/0"),
)
celery.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)


@celery.task(name="noop")
def noop(value: Any = None) -> dict[str, Any]:
    return {"value": value}


@celery.task(name="sleep")
def sleep(seconds: float) -> dict[str, float]:
    time.sleep(seconds)
    return {"slept": seconds}


@celery.task(name="cpu")
def cpu(rounds: int) -> dict[str, Any]:
    return {"digest": digest(rounds), "rounds": rounds}
