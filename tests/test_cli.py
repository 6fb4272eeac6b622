"""The `bgt` console script against live APIs (both executors): exit codes, following, list, show, cancel."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveApi
from tests.live import submit, wait_finished, wait_for
from tests.processes import clean_environ

pytestmark = pytest.mark.slow

BGT = str(Path(sys.executable).parent / "bgt")  # the console script the package installs


def bgt(api: LiveApi | str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    url = api if isinstance(api, str) else api.url
    env = {**clean_environ(), "BGT_URL": url, "COLUMNS": "200"}
    return subprocess.run([BGT, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False)


def test_submit_follows_to_success_and_exits_0(live_api: LiveApi) -> None:
    done = bgt(live_api, "submit", "sleep", "seconds=1")
    assert done.returncode == 0, done.stderr
    assert 'succeeded: {"slept": 1.0}' in done.stdout
    assert "100%" in done.stdout  # the bar's last state


def test_a_failing_task_exits_1_with_its_error(live_api: LiveApi) -> None:
    done = bgt(live_api, "submit", "fail", "message=disk on fire")
    assert done.returncode == 1
    assert "failed: RuntimeError: disk on fire" in done.stderr


def test_a_cancelled_task_exits_3(live_api: LiveApi) -> None:
    follower = subprocess.Popen(
        [BGT, "submit", "sleep", "seconds=600"],
        env={**clean_environ(), "BGT_URL": live_api.url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        listed: list[dict[str, object]] = []
        deadline = time.monotonic() + 30
        while not listed and time.monotonic() < deadline:  # the follower's task, once it runs
            page = httpx.get(f"{live_api.url}/tasks", params={"name": "sleep", "state": "running", "limit": 500}).json()
            listed = [item for item in page["items"] if item["params"] == {"seconds": 600.0}]
            time.sleep(0.1)
        assert listed, "the submitted task never ran"
        cancelled = bgt(live_api, "cancel", str(listed[0]["id"]))
        assert cancelled.returncode == 0
        assert "asked to stop" in cancelled.stdout
        _, err = follower.communicate(timeout=30)
    finally:
        follower.kill()
        follower.wait(10)
    assert follower.returncode == 3
    assert "cancelled" in err


def test_submit_with_json_and_detach_then_follow_show_and_list(live_api: LiveApi) -> None:
    detached = bgt(live_api, "submit", "noop", "--json", '{"value": {"n": [1, 2]}}', "--detach")
    assert detached.returncode == 0
    task_id = detached.stdout.strip()
    followed = bgt(live_api, "follow", task_id)
    assert followed.returncode == 0
    assert 'succeeded: {"value": {"n": [1, 2]}}' in followed.stdout
    shown = bgt(live_api, "show", task_id)
    assert shown.returncode == 0
    assert json.loads(shown.stdout)["result"] == {"value": {"n": [1, 2]}}
    listed = bgt(live_api, "list", "--name", "noop", "--limit", "500")
    assert listed.returncode == 0
    assert task_id in listed.stdout


def test_following_an_ended_task_exits_with_its_outcome(live_api: LiveApi) -> None:
    task_id = submit(live_api.url, "fail", {"message": "earlier"})["id"]
    wait_finished(live_api.url, task_id)
    assert bgt(live_api, "follow", task_id).returncode == 1


def test_cancelling_a_finished_task_exits_4(follow_background: LiveApi) -> None:
    task_id = submit(follow_background.url, "noop")["id"]
    wait_finished(follow_background.url, task_id)
    again = bgt(follow_background, "cancel", task_id)
    assert again.returncode == 4
    assert "HTTP 409" in again.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["show", "00000000-0000-4000-8000-000000000000"], 4, "HTTP 404: no task with id"),
        (["follow", "00000000-0000-4000-8000-000000000000"], 4, "HTTP 404"),
        (["submit", "no_such_task"], 4, "HTTP 404: no task named"),
        (["submit", "cpu", "rounds=0"], 4, "HTTP 422"),
        (["submit", "sleep", "seconds"], 2, "not key=value"),
        (["submit", "sleep", "--json", "[1]"], 2, "must be a JSON object"),
    ],
)
def test_errors_have_their_own_exit_codes(follow_background: LiveApi, args: list[str], code: int, message: str) -> None:
    done = bgt(follow_background, *args)
    assert done.returncode == code
    assert message in done.stderr


def test_an_unreachable_api_exits_4() -> None:
    done = bgt("http://127.0.0.1:9", "list")
    assert done.returncode == 4
    assert "cannot reach the API" in done.stderr


def test_tasks_lists_the_catalog(follow_background: LiveApi) -> None:
    done = bgt(follow_background, "tasks")
    assert done.returncode == 0
    for name in ("noop", "sleep", "cpu", "fail"):
        assert name in done.stdout


def test_the_bar_follows_progress(follow_celery: LiveApi) -> None:
    task_id = submit(follow_celery.url, "sleep", {"seconds": 1.5})["id"]
    wait_for(follow_celery.url, task_id, lambda r: r["progress"] > 0, what="progress")
    done = bgt(follow_celery, "follow", task_id)
    assert done.returncode == 0
    assert "sleep succeeded" in done.stdout
