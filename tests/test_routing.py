"""Where each task runs: declarations, TASK_EXECUTORS and TASK_QUEUES, and the start-up errors of bad routes."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import BaseModel

from shared.routing import Route, RoutingError, celery_queues, resolve
from shared.settings import Settings
from shared.tasks import TaskRegistry
from tests.processes import ROOT, clean_environ


def from_env(**values: object) -> Settings:
    """Settings as the environment gives them (strings)."""
    return Settings.model_validate(values)


class Nothing(BaseModel):
    pass


def registry() -> TaskRegistry:
    tasks = TaskRegistry()

    @tasks.task("light")
    async def light(params: Nothing) -> None: ...

    @tasks.task("heavy", executor="celery", queue="cpu")
    def heavy(params: Nothing) -> None: ...

    @tasks.task("other")
    async def other(params: Nothing) -> None: ...

    return tasks


def test_a_declaration_routes_a_task_and_the_settings_override_it() -> None:
    configured = from_env(redis_url="redis://127.0.0.1:1/0", task_executors="other=celery", task_queues="other=io")
    routes = resolve(configured, registry())
    assert routes == {
        "light": Route("background", "celery"),  # EXECUTOR's default for the rest
        "heavy": Route("celery", "cpu"),  # as declared
        "other": Route("celery", "io"),  # TASK_EXECUTORS and TASK_QUEUES win
    }
    assert celery_queues(routes) == {"heavy": "cpu", "other": "io"}
    back = resolve(from_env(redis_url="redis://127.0.0.1:1/0", task_executors="heavy=background"), registry())
    assert back["heavy"].executor == "background"


def test_an_unknown_task_in_a_route_is_refused_by_name() -> None:
    configured = from_env(redis_url="redis://127.0.0.1:1/0", task_executors="ghost=celery")
    with pytest.raises(RoutingError, match="TASK_EXECUTORS: no task named ghost"):
        resolve(configured, registry())
    with pytest.raises(RoutingError, match="TASK_QUEUES: no task named ghost"):
        resolve(from_env(redis_url="redis://127.0.0.1:1/0", task_queues="ghost=q"), registry())


def test_a_celery_task_without_redis_is_refused() -> None:
    with pytest.raises(RoutingError, match="heavy run on Celery, which needs REDIS_URL"):
        resolve(from_env(), registry())  # dev mode: no Redis, so no worker could ever run it


@pytest.mark.parametrize("bad", ["cpu", "cpu=", "=celery", "cpu=somewhere"])
def test_a_malformed_route_setting_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=r"TASK_EXECUTORS|task_executors|name=value|background"):
        from_env(task_executors=bad)


_REDIS = {"REDIS_URL": "redis://127.0.0.1:1/0"}


@pytest.mark.parametrize(
    ("module", "env", "says"),
    [
        ("api.main", {"TASK_EXECUTORS": "nope=celery", **_REDIS}, "TASK_EXECUTORS: no task named nope"),
        ("api.main", {"TASK_EXECUTORS": "cpu=celery"}, "cpu run on Celery, which needs REDIS_URL"),
        ("api.main", {"TASK_EXECUTORS": "cpu=elsewhere"}, "TASK_EXECUTORS"),
        ("worker.celery_app", {"TASK_EXECUTORS": "nope=celery", **_REDIS}, "TASK_EXECUTORS: no task named nope"),
        ("worker.celery_app", {"TASK_QUEUES": "nope=cpu", **_REDIS}, "TASK_QUEUES: no task named nope"),
        ("worker.celery_app", {"TASK_EXECUTORS": "cpu=elsewhere", **_REDIS}, "TASK_EXECUTORS"),
    ],
)
def test_bad_routes_stop_the_api_and_the_worker_with_one_line(module: str, env: dict[str, str], says: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=ROOT,
        env={**clean_environ(), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr  # one line, no traceback
    assert lines[0].startswith("configuration error:")
    assert says in lines[0]
