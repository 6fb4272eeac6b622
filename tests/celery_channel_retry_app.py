"""The service's Celery app with `broker_channel_error_retry` on (tests.rabbitmq_consumer_timeout --retry)."""

from __future__ import annotations

from worker.celery_app import app

# Off by default in Celery 5.7: a channel error (such as RabbitMQ's consumer timeout) then stops the worker.
app.conf.broker_channel_error_retry = True
