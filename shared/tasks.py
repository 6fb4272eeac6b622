"""The task interface: define a task once, as a typed function, and both executors can run it.

    @task("resize")
    async def resize(params: ResizeParams, ctx: TaskContext) -> dict[str, int]:
        ctx.progress(0.5, "halfway")
        ...

`ctx.progress` and `ctx.cancelled` touch memory only: the shared runner carries progress to Redis at a
throttled rate and brings cancellation back, so a task never waits on I/O to report.
"""

from __future__ import annotations

import importlib
import inspect
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any, TypeVar, get_type_hints

from pydantic import BaseModel

F = TypeVar("F", bound=Callable[..., Any])
MAX_MESSAGE = 500  # characters of a progress message kept: a record's size stays bounded
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")  # a task name is a URL path segment and part of Redis keys


class TaskCancelled(Exception):
    """Raised inside a task (by `ctx.raise_if_cancelled`) to stop because a cancellation was asked."""


class UnknownTask(KeyError):
    """No task is registered under that name."""


class TaskContext:
    """What a running task sees of the outside world: where to report progress, whether to stop."""

    def __init__(self, task_id: str, attempt: int = 1) -> None:
        self.task_id = task_id
        self.attempt = attempt  # 1 for the first run, 2 for the first retry, ...
        self.fraction = 0.0
        self.message: str | None = None
        self.version = 0  # bumped on every report, so the runner writes only what changed
        # Set from the keeper's thread or the event loop, read from the task's thread: a plain attribute is
        # enough (one assignment, atomic), and much cheaper to create per task than a threading.Event.
        self._stop = False

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far the task is (0..1, clamped) with an optional message (cut at MAX_MESSAGE characters)."""
        value = float(fraction)
        self.fraction = min(1.0, max(0.0, value)) if math.isfinite(value) else self.fraction
        self.message = message if message is None or len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"
        self.version += 1

    @property
    def cancelled(self) -> bool:
        """True once somebody asked this run to stop; a `def` task should check it between steps."""
        return self._stop

    def raise_if_cancelled(self) -> None:
        if self._stop:
            raise TaskCancelled(self.task_id)

    def request_stop(self) -> None:
        self._stop = True


@dataclass(frozen=True)
class TaskSpec:
    """A registered task: its name, its function and the pydantic model of its parameters."""

    name: str
    fn: Callable[..., Any]
    params_model: type[BaseModel]
    is_async: bool
    takes_context: bool
    max_attempts: int = 1  # runs in all, counting retries after an error and re-runs after a worker died
    retry_backoff: float = 1.0  # seconds before the first retry; doubles each time, with jitter
    retry_backoff_max: float = 60.0
    time_limit: float | None = None  # seconds one attempt may run (capped by TASK_TIME_LIMIT)
    executor: str | None = None  # where it runs ("background" or "celery"); None: EXECUTOR (TASK_EXECUTORS wins)
    queue: str | None = None  # its Celery queue; None: Celery's default (TASK_QUEUES wins)


class TaskRegistry:
    """Tasks by name; the API builds its routes from it and the worker its Celery tasks."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskSpec] = {}

    def task(
        self,
        name: str | None = None,
        *,
        max_attempts: int = 1,
        retry_backoff: float = 1.0,
        retry_backoff_max: float = 60.0,
        time_limit: float | None = None,
        executor: str | None = None,
        queue: str | None = None,
    ) -> Callable[[F], F]:
        """Register `fn(params: Model[, ctx: TaskContext])`; the model comes from the first annotation.

        `max_attempts` > 1 retries a failed attempt after an exponential, jittered backoff and lets the
        sweeper re-queue a Celery task whose worker died; only declare it for tasks that are safe to re-run.
        """
        if max_attempts < 1 or retry_backoff < 0 or (time_limit is not None and time_limit <= 0):
            raise ValueError("max_attempts must be >= 1, retry_backoff >= 0 and time_limit > 0")
        if executor not in (None, "background", "celery"):
            raise ValueError(f"executor must be 'background' or 'celery', not {executor!r}")

        def register(fn: F) -> F:
            spec = replace(
                _spec_for(name or fn.__name__, fn),
                max_attempts=max_attempts,
                retry_backoff=retry_backoff,
                retry_backoff_max=retry_backoff_max,
                time_limit=time_limit,
                executor=executor,
                queue=queue,
            )
            if not _NAME.fullmatch(spec.name):
                raise ValueError(f"task name {spec.name!r}: use letters, digits, '_', '.' and '-' (at most 100)")
            if spec.name in self._tasks:
                raise ValueError(f"task {spec.name!r} is already registered")
            self._tasks[spec.name] = spec
            return fn

        return register

    def get(self, name: str) -> TaskSpec:
        try:
            return self._tasks[name]
        except KeyError:
            raise UnknownTask(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[TaskSpec]:
        return iter(self._tasks.values())

    def load(self, modules: Iterable[str]) -> TaskRegistry:
        """Import the modules whose decorators register tasks here."""
        for module in modules:
            importlib.import_module(module)
        return self


def _spec_for(name: str, fn: Callable[..., Any]) -> TaskSpec:
    params = list(inspect.signature(fn).parameters.values())
    hints = get_type_hints(fn)
    model = hints.get(params[0].name) if params else None
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"task {name!r}: the first parameter must be annotated with a pydantic model")
    return TaskSpec(name, fn, model, inspect.iscoroutinefunction(fn), len(params) > 1)


registry = TaskRegistry()
task = registry.task
