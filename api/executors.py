"""The two ways to run a task, behind one small protocol; EXECUTOR picks one."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, ClassVar, Protocol

import anyio
from fastapi import BackgroundTasks

from shared.logs import task_logging
from shared.runner import Runner
from shared.settings import Settings

if TYPE_CHECKING:
    from celery import Celery


class Executor(Protocol):
    name: ClassVar[str]

    async def dispatch(self, task_id: str, name: str, params_json: str, background: BackgroundTasks) -> None:
        """Hand a task whose `queued` record is already stored to whatever will run it."""

    async def revoke(self, task_id: str) -> None:
        """Extra help for a cancellation; the store's flag is what every runner obeys."""


class BackgroundExecutor:
    """FastAPI's BackgroundTasks: the runner starts in this process right after the 202 is sent."""

    name: ClassVar[str] = "background"

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    async def dispatch(self, task_id: str, name: str, params_json: str, background: BackgroundTasks) -> None:
        background.add_task(self._run, task_id, name, params_json)

    async def _run(self, task_id: str, name: str, params_json: str) -> None:
        with task_logging(task_id):
            await self.runner.run(task_id, name, params_json)

    async def revoke(self, task_id: str) -> None:
        """Nothing to do: the runner in this process reads the cancel flag with its next heartbeat."""


class CeleryExecutor:
    """A Celery worker over Redis; the Celery task id is the record's id."""

    name: ClassVar[str] = "celery"

    def __init__(self, app: Celery) -> None:
        self.app = app

    async def dispatch(self, task_id: str, name: str, params_json: str, background: BackgroundTasks) -> None:
        await anyio.to_thread.run_sync(partial(self.app.send_task, name, args=[params_json], task_id=task_id))

    async def revoke(self, task_id: str) -> None:
        """Workers drop a revoked message that is still queued instead of running it."""
        await anyio.to_thread.run_sync(partial(self.app.control.revoke, task_id))


def make_executor(settings: Settings, runner: Runner) -> Executor:
    if settings.executor == "celery":
        from worker.factory import make_celery  # only a Celery deployment imports Celery

        return CeleryExecutor(make_celery(settings, runner.registry))
    return BackgroundExecutor(runner)
