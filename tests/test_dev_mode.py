"""Dev mode: `uvicorn api.main:app` with no configuration at all, and the start-up refusals."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.live import get, submit, wait_finished, wait_for
from tests.processes import Proc, spawn, start_api

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dev_api() -> Iterator[str]:
    proc = start_api({})
    yield str(proc.extra["url"])
    proc.stop()


def test_dev_mode_serves_everything_without_redis(dev_api: str) -> None:
    assert httpx.get(f"{dev_api}/health").json() == {
        "status": "ok",
        "executor": "background",
        "redis": True,
        "store_full": False,
        "queues_without_consumer": [],
    }
    assert httpx.get(f"{dev_api}/docs").status_code == 200
    done = wait_finished(dev_api, submit(dev_api, "noop", {"value": 7})["id"])
    assert done["result"] == {"value": 7}


def test_the_api_answers_while_heavy_tasks_run(dev_api: str) -> None:
    heavy = submit(dev_api, "cpu", {"rounds": 100_000_000})["id"]
    slow = submit(dev_api, "sleep", {"seconds": 600})["id"]
    for task_id in (heavy, slow):
        wait_for(dev_api, task_id, lambda r: r["state"] == "running", what="running")
    for _ in range(5):
        assert httpx.get(f"{dev_api}/health", timeout=10).status_code == 200
        assert submit(dev_api, "noop")["state"] == "queued"
    assert get(dev_api, heavy)["state"] == "running"  # the answers above came while it was still working
    assert get(dev_api, slow)["state"] == "running"
    for task_id in (heavy, slow):
        assert httpx.delete(f"{dev_api}/tasks/{task_id}").status_code == 202
        assert wait_finished(dev_api, task_id, timeout=10)["state"] == "cancelled"


def _exit_output(proc: Proc) -> tuple[int, list[str]]:
    code = proc.popen.wait(30)
    return code, [line for line in proc.log().splitlines() if line.strip()]


def test_the_api_refuses_celery_without_redis_in_one_line() -> None:
    proc = spawn("api", [sys.executable, "-m", "uvicorn", "api.main:app", "--port", "0"], {"EXECUTOR": "celery"})
    code, lines = _exit_output(proc)
    assert code != 0
    assert lines == ["configuration error: EXECUTOR=celery needs REDIS_URL (the in-memory store is one process only)"]


def test_the_worker_refuses_to_start_without_redis() -> None:
    proc = spawn("worker", [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker"])
    code, lines = _exit_output(proc)
    assert code != 0
    assert lines[-1] == "configuration error: REDIS_URL: the Celery worker needs the Redis the API uses"
