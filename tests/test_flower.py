"""Celery's own view agrees with the record, as Flower shows it, and a revoke from any sender ends `cancelled`.

One monitoring deployment for the module, in real processes: a redis-server, one Celery worker (one slot, so
a long task keeps the next one queued) with task events as the README's monitoring command sets them, an API
on the Celery executor, and Flower started with the compose file's own `flower` command and environment
(basic auth on, the broker from CELERY_BROKER_URL, no `-A`: it learns everything from the broker's events).
Leases are short, so the sweeper acts within seconds, as in tests/test_chaos.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from shared.settings import Settings
from shared.tasks import registry
from tests.deployment import (
    compose_config,
    local_healthcheck,
    localize_environment,
    native_path,
    substitute,
    wait_healthy,
)
from tests.live import get, submit, wait_finished, wait_for
from tests.processes import (
    FAST_LEASES,
    ROOT,
    Proc,
    free_port,
    spawn,
    start_api,
    start_redis,
    start_worker,
    wait_until,
)
from worker.factory import make_celery

pytestmark = pytest.mark.slow

FLOWER_USER, FLOWER_PASSWORD = "admin", "flower-test-password"
# What the README's monitoring command sets: `CELERY_TASK_EVENTS=true FLOWER_BASIC_AUTH=… docker compose
# --profile monitoring up`.
MONITORING_ENV = {"CELERY_TASK_EVENTS": "true", "FLOWER_BASIC_AUTH": f"{FLOWER_USER}:{FLOWER_PASSWORD}"}


@dataclass
class Monitoring:
    api: str
    flower: str
    worker: Proc
    env: dict[str, str]

    def flower_task(self, task_id: str) -> dict[str, Any] | None:
        resp = httpx.get(f"{self.flower}/api/task/info/{task_id}", auth=(FLOWER_USER, FLOWER_PASSWORD), timeout=5)
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        body: dict[str, Any] = resp.json()
        return body

    def flower_until(self, task_id: str, check: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        """Flower's view of a task once `check` holds (events reach Flower asynchronously)."""
        seen: list[dict[str, Any] | None] = [None]

        def holds() -> bool:
            seen[0] = self.flower_task(task_id)
            return seen[0] is not None and check(seen[0])

        try:
            wait_until(holds, timeout=20, what=f"Flower to show {what}")
        except Exception as exc:
            raise AssertionError(f"{exc}; Flower last showed {seen[0]}") from None
        assert seen[0] is not None
        return seen[0]

    def flower_state(self, task_id: str, state: str) -> dict[str, Any]:
        return self.flower_until(task_id, lambda task: task["state"] == state, state)

    def flower_revoke(self, task_id: str, *, terminate: bool = False) -> None:
        """Flower's revoke (its task page's Revoke and Terminate buttons call the same API)."""
        query = "?terminate=true&signal=SIGTERM" if terminate else ""
        auth = (FLOWER_USER, FLOWER_PASSWORD)
        resp = httpx.post(f"{self.flower}/api/task/revoke/{task_id}{query}", auth=auth, timeout=30)
        assert resp.status_code == 200, resp.text

    def celery_control(self, *args: str) -> str:
        """`celery -A worker.celery_app control ...`, as an operator would type it."""
        argv = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "control", *args]
        env = {"PATH": native_path(), "PYTHONPATH": str(ROOT), **self.env}
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout


def start_flower(redis_address: str) -> tuple[Proc, str]:
    """The compose file's `flower` service, natively: its own command and environment, on a free port."""
    service = compose_config(MONITORING_ENV, profiles=["monitoring"])["services"]["flower"]
    port = free_port()
    argv = [substitute(arg, "--port=5555", f"--port={port}") if "--port=" in arg else arg for arg in service["command"]]
    env = localize_environment(service["environment"], {"redis:6379": redis_address})
    proc = spawn("compose-flower", argv, {**env, "PATH": native_path()})
    check = local_healthcheck(service["healthcheck"]["test"], "127.0.0.1:5555/", f"127.0.0.1:{port}/")
    wait_healthy(proc, check, {}, what="flower")
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def monitoring() -> Iterator[Monitoring]:
    started: list[Proc] = []
    try:
        redis = start_redis()
        started.append(redis)
        config = compose_config(MONITORING_ENV, profiles=["monitoring"])
        events = config["services"]["worker"]["environment"]["CELERY_TASK_EVENTS"]
        assert events == "true", "the monitoring command no longer turns the workers' task events on"
        env = {**FAST_LEASES, "REDIS_URL": str(redis.extra["url"]), "CELERY_TASK_EVENTS": events}
        flower, flower_url = start_flower(f"127.0.0.1:{redis.extra['port']}")
        started.append(flower)
        worker = start_worker(env, concurrency=1)
        started.append(worker)
        assert "task events: ON" in worker.log()  # from its start, not only once Flower enables them
        api = start_api({**env, "EXECUTOR": "celery"})
        started.append(api)
        deployment = Monitoring(str(api.extra["url"]), flower_url, worker, env)
        # Flower learns of a worker from its events; a first task proves the whole path is up.
        warmup = submit(deployment.api, "noop")["id"]
        wait_finished(deployment.api, warmup)
        deployment.flower_state(warmup, "SUCCESS")
        yield deployment
    finally:
        for proc in reversed(started):
            proc.stop(timeout=10)


def test_flower_shows_success_failure_and_a_cancel_as_the_record_does(monitoring: Monitoring) -> None:
    ok = submit(monitoring.api, "noop", {"value": 1})["id"]
    failing = submit(monitoring.api, "fail", {"message": "boom"})["id"]
    assert wait_finished(monitoring.api, ok)["state"] == "succeeded"
    failed = wait_finished(monitoring.api, failing)
    assert (failed["state"], failed["error"]) == ("failed", "RuntimeError: boom")

    shown = monitoring.flower_state(ok, "SUCCESS")
    assert shown["name"] == "noop"
    assert shown["runtime"] is not None
    assert shown["result"] == "None"  # results stay in the store
    shown = monitoring.flower_state(failing, "FAILURE")
    assert shown["name"] == "fail"
    assert "RuntimeError: boom" in shown["exception"]
    assert shown["started"] < shown["failed"]  # Celery's task-failed has no runtime; its start and end tell it

    sleeping = submit(monitoring.api, "sleep", {"seconds": 30})["id"]
    wait_for(monitoring.api, sleeping, lambda r: r["state"] == "running", what="running")
    monitoring.flower_state(sleeping, "STARTED")
    resp = httpx.delete(f"{monitoring.api}/tasks/{sleeping}", timeout=10)
    assert resp.status_code == 202, resp.text
    assert wait_finished(monitoring.api, sleeping, timeout=10)["state"] == "cancelled"
    shown = monitoring.flower_state(sleeping, "REVOKED")
    assert shown["revoked"] is not None
    assert shown["succeeded"] is None
    assert shown["failed"] is None
    # Cancelled at once, whenever that lands: before the worker takes the message (Celery discards it), or
    # while the run's start is not written yet (the runner's optimistic start is refused).
    for _ in range(3):
        early = submit(monitoring.api, "sleep", {"seconds": 30})["id"]
        assert httpx.delete(f"{monitoring.api}/tasks/{early}", timeout=10).status_code in (200, 202)
        assert wait_finished(monitoring.api, early, timeout=10)["state"] == "cancelled"
        monitoring.flower_state(early, "REVOKED")
    # Each of them was logged by Celery once, as the record ended.
    log = monitoring.worker.log()
    assert log.count(f"fail[{failing}] raised expected: TaskFailed('RuntimeError: boom')") == 1
    assert "Traceback" not in log


def test_a_duplicate_delivery_leaves_flowers_state_of_the_real_run(monitoring: Monitoring) -> None:
    task = submit(monitoring.api, "noop", {"value": "once"})
    first = wait_finished(monitoring.api, task["id"])
    before = monitoring.flower_state(task["id"], "SUCCESS")

    sender = make_celery(Settings(redis_url=monitoring.env["REDIS_URL"]), registry)
    # As the sweeper re-sends or the broker re-delivers: received and started by the worker, refused by the claim.
    sender.send_task("noop", args=[json.dumps(task["params"])], kwargs={"owner": "", "eager": True}, task_id=task["id"])
    wait_until(
        lambda: f"task {task['id']} not started" in monitoring.worker.log(), timeout=20, what="the duplicate refused"
    )
    after = monitoring.flower_until(task["id"], lambda t: t["started"] != before["started"], "the duplicate's start")
    assert after["state"] == "SUCCESS"
    assert (after["succeeded"], after["result"]) == (before["succeeded"], before["result"])
    assert get(monitoring.api, task["id"]) == first


def test_a_revoked_queued_task_ends_cancelled_when_its_message_reaches_a_worker(monitoring: Monitoring) -> None:
    ahead = submit(monitoring.api, "sleep", {"seconds": 2})["id"]
    wait_for(monitoring.api, ahead, lambda r: r["state"] == "running", what="running")
    queued = submit(monitoring.api, "noop", {"value": "never"})["id"]  # the worker's one slot is taken
    assert "flagged as revoked" in monitoring.celery_control("revoke", queued)
    done = wait_finished(monitoring.api, queued, timeout=20)
    assert (done["state"], done["attempts"], done["worker"], done["result"]) == ("cancelled", 0, None, None)
    assert wait_finished(monitoring.api, ahead)["state"] == "succeeded"
    shown = monitoring.flower_state(queued, "REVOKED")  # Celery's own announcement of the discarded message
    assert shown["started"] is None


@pytest.mark.parametrize("sender", ["celery control terminate", "flower"])
def test_a_revoke_that_kills_a_running_task_ends_it_cancelled_for_good(monitoring: Monitoring, sender: str) -> None:
    task_id = submit(monitoring.api, "sleep", {"seconds": 60})["id"]  # `sleep` allows 3 attempts
    running = wait_for(monitoring.api, task_id, lambda r: r["state"] == "running", what="running")
    killed_at = time.monotonic()
    if sender == "flower":
        monitoring.flower_revoke(task_id, terminate=True)
    else:  # Celery 5's spelling of `revoke --terminate`
        assert f"terminate: {task_id}" in monitoring.celery_control("terminate", "SIGTERM", task_id)
    done = wait_finished(monitoring.api, task_id, timeout=5)
    assert time.monotonic() - killed_at < 5
    assert (done["state"], done["attempts"], done["error"]) == ("cancelled", 1, None)
    assert done["worker"] == running["worker"]
    assert "its process killed, cancelled" in monitoring.worker.log()
    monitoring.flower_state(task_id, "REVOKED")

    # Well past a lease and many sweeps: nothing re-queues it, nothing runs it again.
    time.sleep(3 * float(FAST_LEASES["LEASE_SECONDS"]))
    assert get(monitoring.api, task_id) == done
    assert monitoring.worker.log().count(f"sleep[{task_id}] received") == 1
    assert monitoring.worker.alive()
    after = submit(monitoring.api, "noop", {"value": "after"})["id"]  # the pool replaced its killed process
    assert wait_finished(monitoring.api, after)["result"] == {"value": "after"}


def test_a_plain_revoke_of_a_running_task_stops_it_cancelled(monitoring: Monitoring) -> None:
    task_id = submit(monitoring.api, "sleep", {"seconds": 60})["id"]
    wait_for(monitoring.api, task_id, lambda r: r["state"] == "running", what="running")
    monitoring.flower_revoke(task_id)  # Celery itself lets a running task run on
    done = wait_finished(monitoring.api, task_id, timeout=10)
    assert (done["state"], done["attempts"]) == ("cancelled", 1)
    monitoring.flower_state(task_id, "REVOKED")
    assert monitoring.worker.log().count(f"sleep[{task_id}] received") == 1
