"""The same scenario against a real uvicorn process for each executor, with real Redis and a real worker."""

from __future__ import annotations

import asyncio
import hashlib
import re
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.live import get, submit, wait_finished, wait_for
from tests.processes import Proc, start_api, start_worker

pytestmark = pytest.mark.slow

LIVE_DB = 2


@pytest.fixture(scope="module")
def live_env(redis_server: Proc) -> dict[str, str]:
    return {
        "REDIS_URL": f"{redis_server.extra['url']}/{LIVE_DB}",
        "PROGRESS_INTERVAL": "0.2",
        "TASK_MODULES": "shared.builtin_tasks,tests.chaos_tasks",
    }


@pytest.fixture(scope="module")
def celery_worker(live_env: dict[str, str]) -> Iterator[Proc]:
    proc = start_worker(live_env, concurrency=2)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def background_api(live_env: dict[str, str]) -> Iterator[str]:
    proc = start_api({**live_env, "EXECUTOR": "background"})
    yield str(proc.extra["url"])
    proc.stop()


@pytest.fixture(scope="module")
def celery_api(live_env: dict[str, str], celery_worker: Proc) -> Iterator[str]:
    proc = start_api({**live_env, "EXECUTOR": "celery"})
    yield str(proc.extra["url"])
    proc.stop()


@pytest.fixture(params=["background", "celery"])
def api(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(executor name, base URL) of a live API, for each executor in turn."""
    return request.param, request.getfixturevalue(f"{request.param}_api")


def test_a_task_runs_reports_progress_and_succeeds(api: tuple[str, str]) -> None:
    executor, base = api
    queued = submit(base, "sleep", {"seconds": 1.5})
    assert queued["state"] == "queued"
    assert queued["executor"] == executor
    running = wait_for(base, queued["id"], lambda r: r["state"] == "running" and r["progress"] > 0, what="progress")
    assert running["attempts"] == 1
    host = "w1@" + socket.gethostname() if executor == "celery" else socket.gethostname()
    assert re.fullmatch(rf"{re.escape(host)}:\d+", running["worker"])
    assert running["started_at"] is not None
    assert running["message"]
    done = wait_finished(base, queued["id"])
    assert done["state"] == "succeeded"
    assert done["result"] == {"slept": 1.5}
    assert done["progress"] == 1.0
    assert done["message"] == "slept 1.5 s"
    assert done["error"] is None
    assert done["created_at"] <= done["started_at"] <= done["finished_at"]


def test_builtin_results_match_their_contract(api: tuple[str, str]) -> None:
    _, base = api
    value = {"nested": [1, 2.5, "x", None, True]}
    noop = submit(base, "noop", {"value": value})
    cpu = submit(base, "cpu", {"rounds": 30_000})
    expected = b""
    for _ in range(30_000):
        expected = hashlib.sha256(expected).digest()
    assert wait_finished(base, noop["id"])["result"] == {"value": value}
    assert wait_finished(base, cpu["id"])["result"] == {"digest": expected.hex(), "rounds": 30_000}


def test_a_failing_task_ends_failed_with_its_error(api: tuple[str, str]) -> None:
    _, base = api
    done = wait_finished(base, submit(base, "fail", {"message": "disk on fire"})["id"])
    assert (done["state"], done["error"], done["result"]) == ("failed", "RuntimeError: disk on fire", None)
    listed = httpx.get(f"{base}/tasks", params={"name": "fail", "state": "failed", "limit": 500}).json()
    assert done["id"] in [item["id"] for item in listed["items"]]


@pytest.mark.parametrize(("name", "params"), [("sleep", {"seconds": 600}), ("cpu", {"rounds": 100_000_000})])
def test_a_running_task_is_cancelled_within_seconds(api: tuple[str, str], name: str, params: dict[str, Any]) -> None:
    _, base = api
    task_id = submit(base, name, params)["id"]
    wait_for(base, task_id, lambda r: r["state"] == "running" and r["progress"] > 0, what="running")
    resp = httpx.delete(f"{base}/tasks/{task_id}")
    assert resp.status_code == 202
    assert resp.json()["state"] == "running"
    done = wait_finished(base, task_id, timeout=10)
    assert done["state"] == "cancelled"
    assert done["result"] is None
    again = httpx.delete(f"{base}/tasks/{task_id}")
    assert again.status_code == 409


def test_a_queued_celery_task_is_cancelled_at_once_and_never_runs(celery_api: str) -> None:
    base = celery_api
    blockers = [submit(base, "sleep", {"seconds": 600})["id"] for _ in range(2)]  # the worker's 2 slots
    for task_id in blockers:
        wait_for(base, task_id, lambda r: r["state"] == "running", what="running")
    waiting = submit(base, "noop", {"value": "never"})["id"]
    assert get(base, waiting)["state"] == "queued"
    resp = httpx.delete(f"{base}/tasks/{waiting}")
    assert resp.status_code == 200
    assert resp.json()["state"] == "cancelled"
    for task_id in blockers:
        assert httpx.delete(f"{base}/tasks/{task_id}").status_code == 202
    for task_id in blockers:
        assert wait_finished(base, task_id, timeout=10)["state"] == "cancelled"
    follower = wait_finished(base, submit(base, "noop")["id"])  # the worker has moved past the cancelled one
    assert follower["state"] == "succeeded"
    never = get(base, waiting)
    assert (never["state"], never["attempts"], never["started_at"], never["result"]) == ("cancelled", 0, None, None)


def test_bad_input_gets_json_errors_not_500(api: tuple[str, str]) -> None:
    _, base = api
    cases = [
        httpx.post(f"{base}/tasks/no_such_task", json={}),
        httpx.post(f"{base}/tasks/sleep", json={"seconds": "long"}),
        httpx.post(f"{base}/tasks/cpu", json={"rounds": 10**9}),
        httpx.post(f"{base}/tasks/sleep", content=b"{", headers={"content-type": "application/json"}),
        httpx.get(f"{base}/tasks/00000000-0000-4000-8000-000000000000"),
        httpx.delete(f"{base}/tasks/00000000-0000-4000-8000-000000000000"),
        httpx.get(f"{base}/tasks/does-not-exist"),  # not even a task id: the path is wrong
        httpx.get(f"{base}/tasks", params={"limit": 1000}),
        httpx.post(f"{base}/tasks/sleep", content=b'{"seconds": 1e400}', headers={"content-type": "application/json"}),
        httpx.post(f"{base}/tasks/noop", content=b'{"value": NaN}', headers={"content-type": "application/json"}),
        httpx.post(f"{base}/tasks/noop", content=b'{"value": "\\ud800"}', headers={"content-type": "application/json"}),
    ]
    assert [resp.status_code for resp in cases] == [404, 422, 422, 422, 404, 404, 422, 422, 422, 422, 422]
    assert all(resp.headers["content-type"] == "application/json" for resp in cases)


def test_200_concurrent_submissions_are_all_accepted_and_all_finish(api: tuple[str, str]) -> None:
    _, base = api

    async def scenario() -> list[dict[str, Any]]:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
            posts = await asyncio.gather(*(client.post("/tasks/noop", json={"value": i}) for i in range(200)))
            assert [resp.status_code for resp in posts] == [202] * 200
            ids = [resp.json()["id"] for resp in posts]
            assert len(set(ids)) == 200

            async def until_done(task_id: str) -> dict[str, Any]:
                for _ in range(600):
                    rec: dict[str, Any] = (await client.get(f"/tasks/{task_id}")).json()
                    if rec["state"] in ("succeeded", "failed", "cancelled"):
                        return rec
                    await asyncio.sleep(0.1)
                raise AssertionError(f"task {task_id} never finished: {rec}")

            return await asyncio.gather(*(until_done(task_id) for task_id in ids))

    records = asyncio.run(scenario())
    assert [rec["state"] for rec in records] == ["succeeded"] * 200
    assert [rec["result"] for rec in records] == [{"value": i} for i in range(200)]


def test_either_api_reads_and_cancels_what_the_other_started(background_api: str, celery_api: str) -> None:
    by_background = submit(background_api, "noop", {"value": "from background"})
    by_celery = submit(celery_api, "noop", {"value": "from celery"})
    seen_by_celery = wait_finished(celery_api, by_background["id"])
    seen_by_background = wait_finished(background_api, by_celery["id"])
    assert (seen_by_celery["executor"], seen_by_celery["result"]) == ("background", {"value": "from background"})
    assert (seen_by_background["executor"], seen_by_background["result"]) == ("celery", {"value": "from celery"})
    long_one = submit(celery_api, "sleep", {"seconds": 600})["id"]
    wait_for(background_api, long_one, lambda r: r["state"] == "running", what="running")
    assert httpx.delete(f"{background_api}/tasks/{long_one}").status_code == 202
    assert wait_finished(celery_api, long_one, timeout=10)["state"] == "cancelled"


def test_health_reports_each_executor(api: tuple[str, str]) -> None:
    executor, base = api
    assert httpx.get(f"{base}/health").json() == {
        "status": "ok",
        "executor": executor,
        "redis": True,
        "store_full": False,
        "queues_without_consumer": [],
    }


def test_a_failing_attempt_is_retried_the_same_way_by_both_executors(api: tuple[str, str]) -> None:
    _, base = api
    done = wait_finished(base, submit(base, "flaky", {"succeed_on": 2})["id"])
    assert (done["state"], done["result"], done["attempts"]) == ("succeeded", {"attempt": 2}, 2)
    assert [(e["attempt"], e["error"]) for e in done["attempt_errors"]] == [(1, "ConnectionError: attempt 1 failed")]
    exhausted = wait_finished(base, submit(base, "flaky", {"succeed_on": 5})["id"])
    assert (exhausted["state"], exhausted["attempts"]) == ("failed", 3)
    assert exhausted["error"] == "ConnectionError: attempt 3 failed"
    assert [e["attempt"] for e in exhausted["attempt_errors"]] == [1, 2, 3]


@pytest.mark.parametrize("name", ["overrun", "overrun_sync"])
def test_a_time_limit_is_enforced_the_same_way_by_both_executors(api: tuple[str, str], name: str) -> None:
    _, base = api
    done = wait_finished(base, submit(base, name)["id"])
    assert (done["state"], done["error"]) == ("failed", "TimeLimitExceeded: attempt 1 ran longer than 0.5 s")


def test_concurrent_requests_with_one_idempotency_key_create_one_task(background_api: str, celery_api: str) -> None:
    """Two API processes, one key: exactly one task, however the requests interleave."""

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            headers = {"Idempotency-Key": f"burst-{id(client)}"}
            return await asyncio.gather(
                *(
                    client.post(f"{base}/tasks/noop", json={"value": "once"}, headers=headers)
                    for base in [background_api, celery_api] * 10
                )
            )

    replies = asyncio.run(burst())
    assert sorted(r.status_code for r in replies) == [200] * 19 + [202]
    ids = {r.json()["id"] for r in replies}
    assert len(ids) == 1
    assert wait_finished(background_api, ids.pop())["state"] == "succeeded"
