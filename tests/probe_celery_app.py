"""A bare Celery app for broker experiments (tests.redelivery_after_kill, the Sentinel worker test): late acks,
prefetch 2, JSON; broker URL, transport options and channel-error retry from the environment; `mark` notes
each run in MARK_FILE."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from celery import Celery, Task

app = Celery("probe", broker=os.environ["BROKER_URL"])
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=2,  # one task runs, the next one waits in the worker: received, not started
    worker_hijack_root_logger=False,
    broker_transport_options=json.loads(os.environ.get("TRANSPORT_OPTIONS", "{}")),
    # Off by default in Celery 5.7: then a channel error stops the worker (a Sentinel failover, a consumer timeout).
    broker_channel_error_retry=os.environ.get("CHANNEL_ERROR_RETRY") == "1",
)


@app.task(name="block")
def block(seconds: float) -> None:
    time.sleep(seconds)


@app.task(name="mark", bind=True)
def mark(self: Task[Any, Any], label: str) -> None:
    """Note when and where this ran, and whether the broker says it was delivered before."""
    redelivered = (self.request.delivery_info or {}).get("redelivered")
    line = {"label": label, "at": time.time(), "worker": self.request.hostname, "redelivered": redelivered}
    with open(os.environ["MARK_FILE"], "a") as out:
        out.write(json.dumps(line) + "\n")
