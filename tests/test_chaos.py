"""Breaking things for real: killed workers and APIs, a Redis outage, shutdowns, duplicate and hostile messages.

Each test starts its own redis-server, workers and APIs, and short leases so the sweeper acts within seconds.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from shared.runner import SHUTDOWN_LOST
from shared.settings import Settings
from shared.store import PROCESS_LOST, WORKER_LOST, StatusStore
from shared.tasks import registry
from tests.live import get, submit, wait_finished, wait_for
from tests.processes import (
    FAST_LEASES,
    Proc,
    Procs,
    free_port,
    start_api,
    start_redis,
    start_worker,
    wait_until,
)
from worker.factory import make_celery

pytestmark = pytest.mark.slow


def url(proc: Proc) -> str:
    return str(proc.extra["url"])


def test_a_task_on_a_killed_worker_finishes_on_another_worker(procs: Procs) -> None:
    env = {**FAST_LEASES, "REDIS_URL": url(procs.add(start_redis()))}
    workers = {name: procs.add(start_worker(env, concurrency=1, hostname=f"{name}@%h")) for name in ("alpha", "beta")}
    api = url(procs.add(start_api({**env, "EXECUTOR": "celery"})))
    task_id = submit(api, "sleep", {"seconds": 3})["id"]
    running = wait_for(api, task_id, lambda r: r["state"] == "running", what="running")
    victim = running["worker"].split("@")[0]
    survivor = "beta" if victim == "alpha" else "alpha"
    workers[victim].kill_group()  # the worker and its pool child, as an OOM kill would
    done = wait_finished(api, task_id, timeout=60)
    assert done["state"] == "succeeded"
    assert done["result"] == {"slept": 3.0}
    assert done["attempts"] == 2
    assert done["worker"].startswith(f"{survivor}@")
    assert [(e["attempt"], e["error"]) for e in done["attempt_errors"]] == [(1, WORKER_LOST)]


def test_a_task_without_attempts_left_ends_lost_when_its_worker_is_killed(procs: Procs) -> None:
    env = {**FAST_LEASES, "REDIS_URL": url(procs.add(start_redis()))}
    worker = procs.add(start_worker(env, concurrency=1))
    api = url(procs.add(start_api({**env, "EXECUTOR": "celery"})))
    task_id = submit(api, "sleep_once", {"seconds": 30})["id"]
    wait_for(api, task_id, lambda r: r["state"] == "running", what="running")
    worker.kill_group()
    done = wait_finished(api, task_id, timeout=30)  # swept by the API: no worker is left
    assert (done["state"], done["error"], done["attempts"]) == ("lost", PROCESS_LOST, 1)
    assert done["finished_at"] is not None


def test_in_process_tasks_of_a_killed_api_end_lost(procs: Procs) -> None:
    env = {**FAST_LEASES, "REDIS_URL": url(procs.add(start_redis())), "EXECUTOR": "background"}
    doomed = procs.add(start_api(env))
    witness = url(procs.add(start_api(env)))
    task_ids = [submit(url(doomed), "sleep", {"seconds": 600})["id"] for _ in range(3)]
    for task_id in task_ids:
        wait_for(witness, task_id, lambda r: r["state"] == "running", what="running")
    doomed.kill_group()
    for task_id in task_ids:
        done = wait_finished(witness, task_id, timeout=30)
        assert (done["state"], done["error"]) == ("lost", PROCESS_LOST)
        assert [e["error"] for e in done["attempt_errors"]] == [PROCESS_LOST]


def test_a_stopping_api_finishes_what_it_can_and_marks_the_rest_lost(procs: Procs) -> None:
    env = {"REDIS_URL": url(procs.add(start_redis())), "EXECUTOR": "background", "PROGRESS_INTERVAL": "0.2"}
    stopping = procs.add(start_api(env, extra_args=("--timeout-graceful-shutdown", "2")))
    reader = url(procs.add(start_api(env)))
    long_id = submit(url(stopping), "sleep", {"seconds": 600})["id"]
    short_id = submit(url(stopping), "sleep", {"seconds": 1})["id"]
    for task_id in (long_id, short_id):
        wait_for(reader, task_id, lambda r: r["state"] == "running", what="running")
    stopping.popen.send_signal(signal.SIGTERM)
    assert stopping.popen.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it is done
    assert get(reader, short_id)["state"] == "succeeded"  # finished within the grace period
    lost = get(reader, long_id)
    assert (lost["state"], lost["error"]) == ("lost", SHUTDOWN_LOST)  # said at once, not left to the sweeper


def test_a_stopping_worker_finishes_its_running_task(procs: Procs) -> None:
    env = {"REDIS_URL": url(procs.add(start_redis())), "PROGRESS_INTERVAL": "0.2"}
    worker = procs.add(start_worker(env, concurrency=1))
    api = url(procs.add(start_api({**env, "EXECUTOR": "celery"})))
    task_id = submit(api, "sleep", {"seconds": 2})["id"]
    wait_for(api, task_id, lambda r: r["state"] == "running", what="running")
    worker.popen.send_signal(signal.SIGTERM)
    done = wait_finished(api, task_id)
    assert (done["state"], done["attempts"]) == ("succeeded", 1)
    assert worker.popen.wait(30) == 0


def test_a_redis_outage_is_a_503_and_everything_recovers(procs: Procs, tmp_path: Path) -> None:
    port, password, key = free_port(), "s3cret-redis-pw", "k-very-secret-api-key"
    procs.add(start_redis(port, data_dir=tmp_path, password=password))
    env = {
        "REDIS_URL": f"redis://:{password}@127.0.0.1:{port}/0",
        "API_KEYS": key,
        "LEASE_SECONDS": "10",
        "SWEEP_INTERVAL": "1",
        "PROGRESS_INTERVAL": "0.2",
    }
    auth = {"X-API-Key": key}
    worker = procs.add(start_worker(env, concurrency=1))
    apis = [procs.add(start_api({**env, "EXECUTOR": ex}, log_level="info")) for ex in ("celery", "background")]
    accepted = [submit(url(api), "sleep", {"seconds": 3}, headers=auth)["id"] for api in apis]
    for api, task_id in zip(apis, accepted, strict=True):
        wait_for(url(api), task_id, lambda r: r["state"] == "running", what="running", headers=auth)

    procs.started[0].stop()  # Redis goes away (its append-only file keeps what it had)
    for api, task_id in zip(apis, accepted, strict=True):
        for resp in (
            httpx.get(f"{url(api)}/tasks/{task_id}", headers=auth, timeout=30),
            httpx.post(f"{url(api)}/tasks/noop", json={}, headers=auth, timeout=30),
            httpx.get(f"{url(api)}/tasks", headers=auth, timeout=30),
        ):
            assert resp.status_code == 503
            assert resp.json() == {"detail": "the status store (Redis) is unavailable; try again"}
        health = httpx.get(f"{url(api)}/health", timeout=30)
        assert (health.status_code, health.json()["redis"], health.json()["status"]) == (200, False, "degraded")
        ready = httpx.get(f"{url(api)}/ready", timeout=30)  # alive, but not ready: take it out of rotation
        assert (ready.status_code, ready.json()["ready"], ready.json()["redis"]) == (503, False, False)
    time.sleep(1)

    procs.add(start_redis(port, data_dir=tmp_path, password=password))

    def redis_back() -> bool:
        return all(httpx.get(f"{url(api)}/health").json()["redis"] for api in apis)

    wait_until(redis_back, timeout=30, what="both APIs to reach Redis again")
    assert [httpx.get(f"{url(api)}/ready").json()["ready"] for api in apis] == [True, True]
    for api, task_id in zip(apis, accepted, strict=True):
        done = wait_finished(url(api), task_id, timeout=60, headers=auth)
        assert done["state"] == "succeeded", done  # accepted with 202 before the outage: not forgotten
        fresh = submit(url(api), "noop", {"value": "after"}, headers=auth)
        assert wait_finished(url(api), fresh["id"], headers=auth)["result"] == {"value": "after"}
    for proc in [*apis, worker]:
        assert password not in proc.log()
        assert key not in proc.log()


def test_only_json_runs_and_a_task_delivered_twice_runs_once(procs: Procs) -> None:
    redis_url = url(procs.add(start_redis()))
    env = {"REDIS_URL": redis_url, "PROGRESS_INTERVAL": "0.2"}
    worker = procs.add(start_worker(env, concurrency=2))
    api = url(procs.add(start_api({**env, "EXECUTOR": "celery"})))
    sender = make_celery(Settings(redis_url=redis_url), registry)

    task = submit(api, "sleep", {"seconds": 1.5})
    wait_for(api, task["id"], lambda r: r["state"] == "running", what="running")
    params = [json.dumps(task["params"])]
    # A re-sent message (as the sweeper sends, or the broker re-delivers): claimed before it runs, so refused.
    sender.send_task("sleep", args=params, kwargs={"owner": "", "eager": True}, task_id=task["id"])  # while it runs
    first = wait_finished(api, task["id"])
    sender.send_task("sleep", args=params, kwargs={"owner": "", "eager": True}, task_id=task["id"])  # after it ended
    # A second copy sent by hand, unmarked: a task that allows several attempts starts optimistically, and is
    # stopped within a progress interval, when its start is refused; its outcome is discarded.
    sender.send_task("sleep", args=params, kwargs={"owner": ""}, task_id=task["id"])

    pickled_id = str(uuid.uuid4())

    async def queued_record() -> None:
        client = Redis.from_url(redis_url)
        await StatusStore(client, ttl_seconds=600).create(pickled_id, "noop", "{}", "celery")
        await client.aclose()

    asyncio.run(queued_record())
    sender.send_task("noop", args=["{}"], task_id=pickled_id, serializer="pickle")
    assert wait_finished(api, submit(api, "noop")["id"])["state"] == "succeeded"

    wait_until(lambda: worker.log().count(f"sleep[{task['id']}] received") == 4, timeout=20, what="every copy")
    wait_until(lambda: "Refusing to deserialize" in worker.log(), timeout=20, what="the pickle to be refused")
    wait_until(lambda: worker.log().count(f"task {task['id']} not started") == 2, timeout=20, what="both refusals")
    wait_until(lambda: f"task {task['id']}: outcome" in worker.log(), timeout=20, what="the unmarked copy stopped")
    again = get(api, task["id"])
    assert (again["state"], again["attempts"], again["finished_at"]) == ("succeeded", 1, first["finished_at"])
    never = get(api, pickled_id)
    assert (never["state"], never["attempts"]) == ("queued", 0)


def test_an_openapi_fuzz_run_finds_no_server_error_and_no_schema_violation(procs: Procs, tmp_path: Path) -> None:
    """Schemathesis against a live server with authentication on. Its tasks run in the API under a 1 s time
    limit, so every fuzzed task ends quickly and a long-poll on one (`?wait=59`) answers at its next change."""
    key = "fuzz-key-0123456789"
    env = {"REDIS_URL": url(procs.add(start_redis())), "EXECUTOR": "background", "API_KEYS": key}
    env |= {"TASK_TIME_LIMIT": "1"}
    api = url(procs.add(start_api(env)))
    checks = [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
        "negative_data_rejection",
        "missing_required_header",
        "ignored_auth",
    ]
    argv = [str(Path(sys.executable).parent / "schemathesis"), "run", f"{api}/openapi.json"]
    argv += ["-H", f"X-API-Key: {key}", "--checks", ",".join(checks), "--max-examples", "25"]
    argv += ["--phases", "examples,coverage,fuzzing", "--seed", "20261122", "--workers", "1"]
    argv += ["--exclude-path-regex", "events$", "--request-timeout", "20"]  # event streams never end
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    counts = re.search(r"(\d+) generated, (\d+) passed", report)
    assert counts is not None, report
    generated, passed = map(int, counts.groups())
    assert generated == passed
    assert generated >= 100  # it really exercised every operation, not an empty run
