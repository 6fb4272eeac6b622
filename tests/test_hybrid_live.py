"""Hybrid routing against live processes: one API runs in-process and Celery tasks at once, per task."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.live import get, submit, wait_finished, wait_for
from tests.processes import Proc, start_api, start_redis, start_worker, wait_until
from tests.sse import read_events

pytestmark = pytest.mark.slow

FAST = {"PROGRESS_INTERVAL": "0.2", "SWEEP_INTERVAL": "0.5", "HEARTBEAT_INTERVAL": "0.3", "LEASE_SECONDS": "3"}
ROUTES = {"EXECUTOR": "background", "TASK_EXECUTORS": "cpu=celery", "TASK_QUEUES": "cpu=cpu"}


@pytest.fixture(scope="module")
def hybrid() -> Iterator[tuple[str, Proc, Proc]]:
    redis = start_redis()
    env = {"REDIS_URL": f"{redis.extra['url']}/0", **FAST, **ROUTES}
    worker = start_worker(env, hostname="cpu1@%h", queues="cpu")
    api = start_api(env)
    yield str(api.extra["url"]), api, worker
    api.stop()
    worker.stop()
    redis.stop()


def test_each_task_runs_where_its_route_says_and_is_followed_the_same_way(hybrid: tuple[str, Proc, Proc]) -> None:
    base, api, _ = hybrid
    heavy = wait_finished(base, submit(base, "cpu", {"rounds": 50_000})["id"])
    light = wait_finished(base, submit(base, "sleep", {"seconds": 0.1})["id"])
    assert (heavy["state"], heavy["executor"]) == ("succeeded", "celery")
    assert heavy["worker"].startswith("cpu1@")  # a worker of the `cpu` queue ran it
    assert (light["state"], light["executor"]) == ("succeeded", "background")
    assert light["worker"].endswith(f":{api.popen.pid}")  # the API process ran it
    listed = {item["id"]: item["executor"] for item in httpx.get(f"{base}/tasks").json()["items"]}
    assert listed[heavy["id"]] == "celery"
    assert listed[light["id"]] == "background"
    events = read_events(f"{base}/tasks/{heavy['id']}/events")
    assert events.ended
    assert events.events[-1].record["state"] == "succeeded"
    catalog = {task["name"]: (task["executor"], task["queue"]) for task in httpx.get(f"{base}/catalog").json()}
    assert catalog["cpu"] == ("celery", "cpu")
    assert catalog["sleep"] == ("background", None)
    doc = httpx.get(f"{base}/openapi.json").json()["paths"]["/tasks/cpu"]["post"]["description"]
    assert "on Celery (queue `cpu`)" in doc


def test_a_celery_task_of_a_hybrid_api_is_cancelled_like_any(hybrid: tuple[str, Proc, Proc]) -> None:
    base, _, _ = hybrid
    task_id = submit(base, "cpu", {"rounds": 100_000_000})["id"]
    wait_for(base, task_id, lambda r: r["state"] == "running" and r["progress"] > 0, what="running")
    assert httpx.delete(f"{base}/tasks/{task_id}").status_code == 202
    assert wait_finished(base, task_id)["state"] == "cancelled"


def test_the_overview_shows_processes_queues_counts_and_recent_work(hybrid: tuple[str, Proc, Proc]) -> None:
    base, api, _ = hybrid
    wait_finished(base, submit(base, "fail", {"message": "counted"})["id"])

    def seen() -> bool:
        body = httpx.get(f"{base}/overview").json()
        kinds = {p["kind"] for p in body["processes"] if not p["gone"]}
        return kinds == {"api", "worker"} and bool(body["queues"])

    wait_until(seen, timeout=15, what="both processes to report")
    time.sleep(2.1)  # past the cache of the last answer
    body = httpx.get(f"{base}/overview").json()
    worker = next(p for p in body["processes"] if p["kind"] == "worker")
    assert (worker["queues"], worker["executors"]) == (["cpu"], ["celery"])
    front = next(p for p in body["processes"] if p["kind"] == "api")
    assert front["name"].endswith(f":{api.popen.pid}")
    assert body["queues"] == [{"name": "cpu", "tasks": ["cpu"], "depth": 0, "consumers": 1}]
    assert body["counts"]["failed"] >= 1
    assert body["counts"]["succeeded"] >= 1
    assert sum(point["ended"] for point in body["series"]) >= 1
    assert httpx.get(f"{base}/health").json()["queues_without_consumer"] == []


def test_a_queue_nobody_consumes_is_visible_in_health() -> None:
    redis = start_redis()
    env = {"REDIS_URL": f"{redis.extra['url']}/0", **FAST, **ROUTES, "TASK_QUEUES": "cpu=nobody"}
    worker = start_worker(env, hostname="other@%h", queues="celery")
    api = start_api(env)
    try:
        base = str(api.extra["url"])
        task_id = submit(base, "cpu", {"rounds": 1000})["id"]

        def flagged() -> bool:
            return bool(httpx.get(f"{base}/health").json()["queues_without_consumer"] == ["nobody"])

        wait_until(flagged, timeout=15, what="/health to name the queue")
        assert get(base, task_id)["state"] == "queued"  # waiting, visibly, for a worker of its queue
    finally:
        api.stop()
        worker.stop()
        redis.stop()


def test_killing_a_hybrid_api_and_a_worker_mid_run_keeps_each_tasks_guarantees() -> None:
    """In-process tasks of the killed API end `lost` (its sibling's sweeper says so); Celery tasks of the killed
    worker are re-queued and succeed on the other worker."""
    redis = start_redis()
    env = {"REDIS_URL": f"{redis.extra['url']}/0", **FAST, **ROUTES}
    workers = {
        name: start_worker(env, concurrency=1, hostname=f"{name}@%h", queues="cpu,celery") for name in ("a", "b")
    }
    doomed, sibling = start_api(env), start_api(env)
    procs = [doomed, sibling, *workers.values()]
    try:
        base = str(doomed.extra["url"])
        in_process = [submit(base, "sleep", {"seconds": 30})["id"] for _ in range(3)]
        on_celery = submit(base, "cpu", {"rounds": 30_000_000})["id"]  # a few seconds; cpu allows 3 attempts
        for task_id in in_process:
            wait_for(base, task_id, lambda r: r["state"] == "running", what="running")
        running = wait_for(base, on_celery, lambda r: r["state"] == "running", what="running")
        doomed.kill_group()
        workers[running["worker"].split("@")[0]].kill_group()
        other = str(sibling.extra["url"])
        for task_id in in_process:
            done = wait_finished(other, task_id, timeout=30)
            assert (done["state"], done["executor"]) == ("lost", "background")
        done = wait_finished(other, on_celery, timeout=90)
        assert (done["state"], done["executor"], done["attempts"]) == ("succeeded", "celery", 2)
    finally:
        for proc in procs:
            proc.stop()
        redis.stop()
