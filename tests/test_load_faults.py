"""Guarantees under load, a full Redis, clock skew and lost messages, each reproduced on real processes, and a
small load-with-faults run whose invariants must hold: every accepted task ends (or runs) within the bound the
README states, no body runs twice unless its attempts allow it, nothing is missing from the listing."""

from __future__ import annotations

import asyncio
import random
import time
from functools import partial
from typing import Any

import httpx
import psutil
import pytest
import redis

from shared.store import StatusStore
from tests.live import TERMINAL, get, submit, wait_finished, wait_for
from tests.processes import FAST_LEASES, Proc, Procs, start_api, start_redis, start_worker, wait_until

pytestmark = pytest.mark.slow


def url(proc: Proc, db: int = 0) -> str:
    return f"{proc.extra['url']}/{db}"


def runs(counter: str, task_id: str) -> int:
    with redis.Redis.from_url(counter) as client:
        return int(client.get(f"runs:{task_id}") or 0)


# -- 1. bursts on a healthy Redis ------------------------------------------------------------------------------


def test_a_burst_of_400_requests_is_queued_for_connections_not_refused(procs: Procs) -> None:
    env = {"REDIS_URL": url(procs.add(start_redis())), "EXECUTOR": "background", "REDIS_MAX_CONNECTIONS": "20"}
    api = str(procs.add(start_api(env)).extra["url"])
    some = submit(api, "sleep", {"seconds": 0.1})["id"]

    async def burst() -> list[int]:
        limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
        async with httpx.AsyncClient(base_url=api, limits=limits, timeout=60) as client:
            posts = [client.post("/tasks/noop", json={"value": i}) for i in range(400)]
            gets = [client.get(f"/tasks/{some}") for _ in range(400)]
            answers = await asyncio.gather(*posts, *gets)
        return [resp.status_code for resp in answers]

    statuses = asyncio.run(burst())
    assert statuses.count(202) == 400  # with 20 connections for 800 requests: they waited, none was refused
    assert statuses.count(200) == 400
    metrics = httpx.get(f"{api}/metrics").text
    assert 'bgt_redis_errors_total{executor="background",source="api"} 0.0' in metrics


def test_150_followers_of_one_task_all_see_it_to_its_end(procs: Procs) -> None:
    env = {"REDIS_URL": url(procs.add(start_redis())), "EXECUTOR": "background", "PROGRESS_INTERVAL": "0.2"}
    env["REDIS_MAX_CONNECTIONS"] = "20"
    api = str(procs.add(start_api(env)).extra["url"])
    task_id = submit(api, "sleep", {"seconds": 4})["id"]

    async def follow() -> list[str]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=api, limits=limits, timeout=60) as client:

            async def one() -> str:
                async with client.stream("GET", f"/tasks/{task_id}/events") as resp:
                    if resp.status_code != 200:
                        return f"status {resp.status_code}"
                    last = ""
                    async for line in resp.aiter_lines():
                        if line.startswith("data:"):
                            last = line
                    return "succeeded" if '"state":"succeeded"' in last else f"cut: {last[:80]}"

            return await asyncio.gather(*(one() for _ in range(150)))

    assert asyncio.run(follow()) == ["succeeded"] * 150  # each one to the end: none refused, none cut


# -- 2. nothing stays queued for ever ----------------------------------------------------------------------------


def test_a_worker_that_cannot_reach_the_store_gives_its_messages_back(procs: Procs, tmp_path: Any) -> None:
    store_redis = procs.add(start_redis(data_dir=tmp_path))
    broker = procs.add(start_redis())
    env = {**FAST_LEASES, "REDIS_URL": url(store_redis), "CELERY_BROKER_URL": url(broker)}
    api = str(procs.add(start_api({**env, "EXECUTOR": "celery"})).extra["url"])
    accepted = [submit(api, "sleep_once", {"seconds": 0.2})["id"] for _ in range(4)]  # no worker yet
    port = int(str(store_redis.extra["port"]))
    store_redis.stop()  # the store goes away before any worker received them
    worker = procs.add(start_worker(env))
    wait_until(lambda: "message returned to the queue" in worker.log(), timeout=30, what="a message given back")
    procs.add(start_redis(port, data_dir=tmp_path))
    for task_id in accepted:  # none was acknowledged without running: each runs once the store is back
        done = wait_finished(api, task_id, timeout=60)
        assert (done["state"], done["attempts"]) == ("succeeded", 1)


def test_a_message_that_may_never_have_been_sent_is_sent_by_a_sweeper(procs: Procs) -> None:
    """What an API that died between storing a task and sending its message (to another broker) leaves."""
    env = {
        **FAST_LEASES,
        "REDIS_URL": url(procs.add(start_redis())),
        "CELERY_BROKER_URL": url(procs.add(start_redis())),
    }
    procs.add(start_worker(env))
    api = str(procs.add(start_api({**env, "EXECUTOR": "celery"})).extra["url"])

    async def stored_but_never_sent() -> str:
        store = StatusStore(redis.asyncio.Redis.from_url(env["REDIS_URL"]), ttl_seconds=600, lease_seconds=2)
        task_id = store.new_task_id()
        await store.create(task_id, "sleep_once", '{"seconds":0.1}', "celery", lease="d")
        await store.redis.aclose()
        return task_id

    task_id = asyncio.run(stored_but_never_sent())
    done = wait_finished(api, task_id, timeout=30)  # within a lease and a sweep
    assert (done["state"], done["attempts"]) == ("succeeded", 1)


def test_a_message_taken_by_a_worker_killed_before_running_it_is_delivered_again(procs: Procs) -> None:
    counter = url(procs.add(start_redis()), 1)
    env = {**FAST_LEASES, "REDIS_URL": url(procs.add(start_redis())), "CELERY_VISIBILITY_TIMEOUT": "10"}
    env["COUNT_URL"] = counter
    doomed = procs.add(start_worker(env, concurrency=1, hostname="doomed@%h"))
    api = str(procs.add(start_api({**env, "EXECUTOR": "celery"})).extra["url"])
    first = submit(api, "counted_once", {"seconds": 30})["id"]
    wait_for(api, first, lambda r: r["state"] == "running", what="running")
    waiting = submit(api, "counted_once", {"seconds": 0.1})["id"]  # prefetched by the busy worker
    time.sleep(1)
    doomed.kill_group()
    procs.add(start_worker(env, concurrency=2, hostname="rescuer@%h"))
    done = wait_finished(api, waiting, timeout=60)  # the visibility timeout, then another worker runs it
    assert (done["state"], done["attempts"]) == ("succeeded", 1)
    assert runs(counter, waiting) == 1
    ended = wait_finished(api, first, timeout=60)  # at most once: the killed attempt leaves it lost
    assert ended["state"] == "lost"
    assert runs(counter, first) == 1


# -- 3. a full Redis ------------------------------------------------------------------------------------------


def test_a_full_redis_refuses_new_work_keeps_workers_alive_and_recovers(procs: Procs) -> None:
    server = procs.add(start_redis())
    with redis.Redis.from_url(url(server)) as admin:
        admin.config_set("maxmemory", "40mb")
        admin.config_set("maxmemory-policy", "noeviction")
        env = {**FAST_LEASES, "REDIS_URL": url(server)}
        worker = procs.add(start_worker(env))
        api = str(procs.add(start_api({**env, "EXECUTOR": "celery"})).extra["url"])
        big = {"value": "x" * 900_000}
        accepted: list[httpx.Response] = []
        refused: list[httpx.Response] = []
        for _ in range(60):
            resp = httpx.post(f"{api}/tasks/noop", json=big, timeout=30)
            (accepted if resp.status_code == 202 else refused).append(resp)
        assert accepted
        assert refused
        assert {resp.status_code for resp in refused} == {507}
        assert all(resp.headers["retry-after"] for resp in refused)
        assert "full" in refused[0].json()["detail"]
        for resp in accepted:  # what was accepted can finish: the API kept room for it
            assert wait_finished(api, resp.json()["id"], timeout=60)["state"] in TERMINAL
        assert worker.alive()
        # The worker drained the queued messages, which freed their memory: fill Redis past the limit with
        # something that stays, so that /health has a lasting state to report.
        chunk = 0
        while int(admin.info("memory")["used_memory"]) < 0.93 * 40 * 2**20:
            admin.set(f"filler:{chunk}", b"f" * 2**19)
            chunk += 1
        wait_until(lambda: httpx.get(f"{api}/health").json()["store_full"], timeout=10, what="/health to say so")
        assert httpx.post(f"{api}/tasks/noop", json={"value": 1}, timeout=30).status_code == 507
        admin.config_set("maxmemory", "200mb")  # memory frees (an operator, or expiring records)
        wait_until(lambda: not httpx.get(f"{api}/health").json()["store_full"], timeout=10, what="recovery")
        assert wait_finished(api, submit(api, "noop", big)["id"])["state"] == "succeeded"


def test_listing_and_the_event_feed_never_hold_more_than_a_page(procs: Procs) -> None:
    keys = "alice-key,bob-key"
    env = {"REDIS_URL": url(procs.add(start_redis())), "EXECUTOR": "background", "API_KEYS": keys}
    api_proc = procs.add(start_api(env))
    api = str(api_proc.extra["url"])
    alice, bob = {"X-API-Key": "alice-key"}, {"X-API-Key": "bob-key"}
    big = {"value": "y" * 900_000}
    for _ in range(120):
        assert httpx.post(f"{api}/tasks/noop", json=big, headers=alice, timeout=30).status_code == 202
    rss = psutil.Process(api_proc.popen.pid)
    before = rss.memory_info().rss
    page = httpx.get(f"{api}/tasks", params={"limit": 1}, headers=alice, timeout=30).json()
    assert len(page["items"]) == 1
    with httpx.stream("GET", f"{api}/events", headers={**bob, "Last-Event-ID": "0-0"}, timeout=5) as resp:
        assert resp.status_code == 200
        try:
            for _ in resp.iter_lines():
                pass
        except httpx.ReadTimeout:
            pass  # Bob owns nothing: the replay of Alice's 120 big tasks sends him nothing
    grown = (rss.memory_info().rss - before) / 2**20
    assert grown < 60, f"the API grew by {grown:.0f} MB"  # a page of 4 MB at most, not 120 records of ~1 MB


# -- 4. cancellation sticks -----------------------------------------------------------------------------------


def test_a_cancelled_task_whose_worker_dies_ends_cancelled_and_never_runs_again(procs: Procs) -> None:
    counter = url(procs.add(start_redis()), 1)
    env = {**FAST_LEASES, "REDIS_URL": url(procs.add(start_redis())), "COUNT_URL": counter}
    workers = {f"w{i}": procs.add(start_worker(env, concurrency=1, hostname=f"w{i}@%h")) for i in range(2)}
    api = str(procs.add(start_api({**env, "EXECUTOR": "celery"})).extra["url"])
    task_id = submit(api, "counted", {"seconds": 30})["id"]
    running = wait_for(api, task_id, lambda r: r["state"] == "running", what="running")
    # The worker is killed before its next heartbeat brings it the stop: only the store knows it was asked.
    workers[running["worker"].split("@")[0]].kill_group()
    assert httpx.delete(f"{api}/tasks/{task_id}").status_code == 202
    done = wait_finished(api, task_id, timeout=30)
    assert done["state"] == "cancelled"
    time.sleep(3)  # a lease and more: nothing re-queued it
    assert get(api, task_id)["state"] == "cancelled"
    assert runs(counter, task_id) == 1


def test_a_short_task_answered_stopping_ends_cancelled(procs: Procs) -> None:
    env = {"REDIS_URL": url(procs.add(start_redis())), "EXECUTOR": "background", "PROGRESS_INTERVAL": "0.2"}
    api = str(procs.add(start_api(env)).extra["url"])
    answered = []
    for _ in range(20):
        task_id = submit(api, "sleep", {"seconds": 0.6})["id"]
        wait_for(api, task_id, lambda r: r["state"] == "running", what="running", timeout=10)
        resp = httpx.delete(f"{api}/tasks/{task_id}")
        answered.append((resp.status_code, wait_finished(api, task_id)["state"]))
    assert {state for status, state in answered if status == 202} == {"cancelled"}  # never `succeeded`
    assert any(status == 202 for status, _ in answered)


# -- 5. runs that do not overlap -----------------------------------------------------------------------------


def test_a_task_that_blocks_its_event_loop_longer_than_a_lease_runs_once(procs: Procs) -> None:
    counter = url(procs.add(start_redis()), 1)
    env = {**FAST_LEASES, "REDIS_URL": url(procs.add(start_redis())), "COUNT_URL": counter}
    for i in range(2):
        procs.add(start_worker(env, concurrency=1, hostname=f"w{i}@%h"))
    api = str(procs.add(start_api({**env, "EXECUTOR": "celery"})).extra["url"])
    task_id = submit(api, "hogs_the_loop", {"seconds": 6})["id"]  # three leases of a blocked loop
    done = wait_finished(api, task_id, timeout=60)
    assert (done["state"], done["attempts"], done["attempt_errors"]) == ("succeeded", 1, [])
    assert runs(counter, task_id) == 1


def test_a_redis_outage_longer_than_a_lease_re_runs_nothing_that_finished(procs: Procs, tmp_path: Any) -> None:
    counter = url(procs.add(start_redis()), 1)
    server = procs.add(start_redis(data_dir=tmp_path))
    env = {**FAST_LEASES, "REDIS_URL": url(server), "COUNT_URL": counter}
    procs.add(start_worker(env, concurrency=4))
    api_proc = procs.add(start_api({**env, "EXECUTOR": "celery"}))
    api = str(api_proc.extra["url"])
    tasks = [submit(api, "counted", {"seconds": 1.5})["id"] for _ in range(4)]
    for task_id in tasks:
        wait_for(api, task_id, lambda r: r["state"] == "running", what="running")
    port = int(str(server.extra["port"]))
    server.stop()  # they finish while Redis is away: for three leases
    time.sleep(6)
    procs.add(start_redis(port, data_dir=tmp_path))
    for task_id in tasks:
        done = wait_finished(api, task_id, timeout=60)
        assert (done["state"], done["attempts"], done["attempt_errors"]) == ("succeeded", 1, []), done
        assert runs(counter, task_id) == 1


# -- 6. one clock ---------------------------------------------------------------------------------------------


def test_an_api_whose_clock_runs_45_s_ahead_takes_no_healthy_task_for_dead(procs: Procs) -> None:
    env = {**FAST_LEASES, "REDIS_URL": url(procs.add(start_redis())), "EXECUTOR": "background"}
    honest = str(procs.add(start_api(env)).extra["url"])
    procs.add(start_api(env, wrap=("faketime", "-f", "+45s")))  # sweeps every 0.3 s with its wrong clock
    tasks = [submit(honest, "sleep", {"seconds": 6})["id"] for _ in range(3)]
    for task_id in tasks:
        done = wait_finished(honest, task_id, timeout=30)
        assert (done["state"], done["attempt_errors"]) == ("succeeded", [])


# -- 9. /metrics, optionally protected -------------------------------------------------------------------------


def test_metrics_can_require_a_bearer_token(procs: Procs) -> None:
    env = {"REDIS_URL": url(procs.add(start_redis())), "EXECUTOR": "background", "METRICS_TOKEN": "scrape-me"}
    api = str(procs.add(start_api(env)).extra["url"])
    assert httpx.get(f"{api}/metrics").status_code == 401
    assert httpx.get(f"{api}/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = httpx.get(f"{api}/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert ok.status_code == 200
    assert "bgt_tasks_total" in ok.text


# -- the load-with-faults run ---------------------------------------------------------------------------------


def test_a_run_with_worker_kills_an_api_kill_and_a_redis_restart_keeps_its_promises(
    procs: Procs, tmp_path: Any
) -> None:
    counter = url(procs.add(start_redis()), 1)
    server = procs.add(start_redis(data_dir=tmp_path))
    env = {**FAST_LEASES, "REDIS_URL": url(server), "COUNT_URL": counter, "CELERY_VISIBILITY_TIMEOUT": "10"}
    env["CELERY_RESEND_AFTER"] = "20"  # a message the broker lost (a Redis stop mid-pop) is sent again
    workers = [procs.add(start_worker(env, concurrency=2, hostname=f"w{i}@%h")) for i in range(3)]
    celery = str(procs.add(start_api({**env, "EXECUTOR": "celery"})).extra["url"])
    doomed_api = procs.add(start_api({**env, "EXECUTOR": "background"}))
    background = str(doomed_api.extra["url"])
    spare = str(procs.add(start_api({**env, "EXECUTOR": "background"})).extra["url"])
    rng = random.Random(7)
    accepted: dict[str, tuple[str, str]] = {}  # id -> (task name, the API that took it)

    def submit_some(count: int) -> None:
        for _ in range(count):
            name = rng.choice(["counted", "counted_once"])
            base = rng.choice([celery, background, spare]) if doomed_api.alive() else rng.choice([celery, spare])
            resp = httpx.post(f"{base}/tasks/{name}", json={"seconds": rng.choice([0, 0.2, 1.0])}, timeout=30)
            if resp.status_code == 202:
                accepted[resp.json()["id"]] = (name, base)
            else:
                assert resp.status_code == 503, resp.text  # only an outage may refuse, and says so

    submit_some(120)
    workers[0].kill_group()
    submit_some(60)
    doomed_api.kill_group()
    workers.append(procs.add(start_worker(env, concurrency=2, hostname="w3@%h")))
    submit_some(60)
    port = int(str(server.extra["port"]))
    server.stop()
    time.sleep(1)
    procs.add(start_redis(port, data_dir=tmp_path))
    submit_some(60)
    workers[1].kill_group()
    submit_some(40)
    # Every accepted task ends within the bound (the README's Guarantees): a lease and a sweep after the last
    # fault, a lease more after Redis came back, the visibility timeout (and its restore interval) for a message a
    # killed worker had taken, CELERY_RESEND_AFTER (and a prune interval) for one the broker lost; plus the time
    # to run what is queued on the workers left.
    deadline = time.monotonic() + 90
    ended: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline and len(ended) < len(accepted):
        for task_id in accepted.keys() - ended.keys():
            record = httpx.get(f"{spare}/tasks/{task_id}", timeout=10).json()
            if record["state"] in TERMINAL:
                ended[task_id] = record
        time.sleep(0.5)
    unfinished = {task_id: httpx.get(f"{spare}/tasks/{task_id}").json() for task_id in accepted.keys() - ended.keys()}
    assert not unfinished, f"{len(unfinished)} of {len(accepted)} still unfinished: {unfinished}"
    for task_id, record in ended.items():
        name, _ = accepted[task_id]
        started = runs(counter, task_id)
        if name == "counted_once":
            assert started <= 1, record  # at most once
        else:
            # Runs again only as its attempts allow (the optimistic first run, cut by a crash before it wrote
            # its start, is the one that may not count: see Guarantees).
            assert started <= record["attempts"] + 1, record
        if record["state"] == "succeeded":
            assert started >= 1
    listed: set[str] = set()
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{spare}/tasks", params=params, timeout=30).json()
        listed |= {item["id"] for item in page["items"]}
        if not (cursor := page["next_cursor"]):
            break
    assert set(accepted) <= listed  # nothing accepted is missing from the listing


# -- nothing grows without bound ------------------------------------------------------------------------------


def test_once_records_expire_every_key_and_the_memory_go_back_to_their_baseline(procs: Procs) -> None:
    server = procs.add(start_redis())
    env = {"REDIS_URL": url(server), "RESULT_TTL_SECONDS": "2", "EVENTS_MAX_AGE": "2", "SWEEP_INTERVAL": "0.3"}
    env |= {"PROGRESS_INTERVAL": "0.2", "HEARTBEAT_INTERVAL": "0.3", "LEASE_SECONDS": "2"}
    procs.add(start_worker(env))
    apis = {ex: str(procs.add(start_api({**env, "EXECUTOR": ex})).extra["url"]) for ex in ("background", "celery")}
    per_task = (b":t:", b":ix:", b":events", b":names:", b":owners", b":leases", b":idem:")
    with redis.Redis.from_url(url(server)) as client:

        def keys() -> list[bytes]:
            found = client.scan_iter(count=1000)
            return [key for key in found if not key.endswith(b":prune")]  # a lock held for a moment

        def tidy() -> bool:
            return not [key for key in keys() if any(part in key for part in per_task)]

        def reading() -> tuple[int, int]:
            info = client.info("memory")  # clients' buffers apart: they swing on their own
            return len(keys()), int(info["used_memory"]) - int(info["mem_clients_normal"])

        for base in apis.values():  # a first round loads the scripts and grows the pools: not per task
            wait_finished(base, submit(base, "noop")["id"])
        wait_until(tidy, timeout=60, what="the warm-up's records, indexes and streams to go")
        time.sleep(1)
        keys_before, memory_before = reading()
        ids = []
        for i in range(200):
            base = apis["background" if i % 2 else "celery"]
            ids.append(submit(base, rng_task(i), {"value": i} if rng_task(i) == "noop" else {"message": "x"})["id"])
        assert reading()[0] > keys_before  # records, indexes, the event stream (the first ones expire already)

        def ended_or_expired(task_id: str) -> bool:  # only an ended record expires
            resp = httpx.get(f"{apis['background']}/tasks/{task_id}", timeout=10)
            return resp.status_code == 404 or resp.json()["state"] in TERMINAL

        for task_id in ids:
            wait_until(partial(ended_or_expired, task_id), timeout=60, what=f"task {task_id} to end")
        wait_until(tidy, timeout=60, what="every record, index, name and stream to go")
        time.sleep(1)
        keys_after, memory_after = reading()
    assert keys_after == keys_before  # the processes' own reports and the broker's bindings are all that stay
    assert memory_after - memory_before < 64 * 1024, (memory_before, memory_after)


def rng_task(i: int) -> str:
    return "fail" if i % 7 == 0 else "noop"
