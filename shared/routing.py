"""Where each task runs: its declaration (`@task(..., executor=, queue=)`), overridden by TASK_EXECUTORS and
TASK_QUEUES, with EXECUTOR for the rest. One API process runs both executors at once when the routes ask.

A wrong route is a start-up error of one line (an unknown task, a Celery task without Redis), never a
surprise at the first request.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings import Settings
from shared.tasks import TaskRegistry

DEFAULT_QUEUE = "celery"  # Celery's own default queue


@dataclass(frozen=True)
class Route:
    executor: str  # "background" or "celery"
    queue: str  # the Celery queue (meaningful for "celery" only)


class RoutingError(ValueError):
    """A route names a task that is not registered, or cannot run where it is sent."""


def resolve(settings: Settings, registry: TaskRegistry) -> dict[str, Route]:
    """Every registered task's route; RoutingError (one line) for a configuration that cannot work."""
    for setting, names in (("TASK_EXECUTORS", settings.task_executors), ("TASK_QUEUES", settings.task_queues)):
        unknown = sorted(name for name in names if name not in registry)
        if unknown:
            known = ", ".join(spec.name for spec in registry)
            raise RoutingError(f"{setting}: no task named {', '.join(unknown)} (registered: {known})")
    routes = {
        spec.name: Route(
            settings.task_executors.get(spec.name) or spec.executor or settings.executor,
            settings.task_queues.get(spec.name) or spec.queue or DEFAULT_QUEUE,
        )
        for spec in registry
    }
    on_celery = sorted(name for name, route in routes.items() if route.executor == "celery")
    if on_celery and not settings.redis_url:
        raise RoutingError(
            f"{', '.join(on_celery)} run on Celery, which needs REDIS_URL (the in-memory store is one process only)"
        )
    if (on_celery or settings.executor == "celery") and settings.redis_cluster:
        broker = settings.celery_broker_url
        if not broker or broker == settings.redis_url:
            raise RoutingError(
                "REDIS_CLUSTER=true: Celery's broker cannot be a Redis Cluster (kombu has no cluster transport); "
                "set CELERY_BROKER_URL to a plain Redis, a Sentinel set or RabbitMQ"
            )
    return routes


def celery_queues(routes: dict[str, Route]) -> dict[str, str]:
    """Task name -> queue, for the tasks that run on Celery."""
    return {name: route.queue for name, route in routes.items() if route.executor == "celery"}
