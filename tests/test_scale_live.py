"""Beyond one Redis, with live processes: a Redis Cluster as the store, Sentinel failover, TLS with an ACL user,
and RabbitMQ as Celery's broker. The same core scenario passes on each; then what each adds is broken."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from shared.store import WORKER_LOST
from tests.live import TERMINAL, get, submit, wait_finished, wait_for
from tests.processes import FAST_LEASES, Proc, Procs, start_api, start_redis, start_worker, wait_until
from tests.sse import read_events
from tests.topologies import rabbitmq_vhost, redis_cluster, sentinel_set, tls_redis

pytestmark = pytest.mark.slow


def core_scenario(base: str, executor: str) -> None:
    """Submit, follow (long-poll and SSE), cancel, list by state and name, and the all-tasks stream."""
    feed: list[str] = []
    with ThreadPoolExecutor(1) as pool:
        watching = pool.submit(
            read_events, f"{base}/events", until=lambda got: any(e.record["state"] == "cancelled" for e in got)
        )
        time.sleep(0.5)
        task = submit(base, "sleep", {"seconds": 1})
        first = httpx.get(f"{base}/tasks/{task['id']}", params={"wait": 10}, headers={"If-None-Match": '"1"'})
        assert first.status_code == 200
        events = read_events(f"{base}/tasks/{task['id']}/events")
        assert events.ended
        assert events.events[-1].record["state"] == "succeeded"
        done = get(base, task["id"])
        assert (done["executor"], done["result"]) == (executor, {"slept": 1.0})
        long = submit(base, "sleep", {"seconds": 60})["id"]
        wait_for(base, long, lambda r: r["state"] == "running", what="running")
        assert httpx.delete(f"{base}/tasks/{long}").status_code == 202
        assert wait_finished(base, long)["state"] == "cancelled"
        feed = [e.record["id"] for e in watching.result(timeout=60).events]
    assert {task["id"], long} <= set(feed)
    cancelled = httpx.get(f"{base}/tasks", params={"state": "cancelled"}).json()["items"]
    assert long in [item["id"] for item in cancelled]
    by_name = httpx.get(f"{base}/tasks", params={"name": "sleep", "limit": 1}).json()
    assert len(by_name["items"]) == 1
    assert by_name["next_cursor"] is not None
    assert httpx.get(f"{base}/ready").json()["ready"] is True


# -- Redis Cluster -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("executor", ["background", "celery"])
def test_the_core_scenario_on_a_redis_cluster(procs: Procs, executor: str) -> None:
    with redis_cluster() as cluster:
        broker = procs.add(start_redis())
        env = {**FAST_LEASES, "REDIS_URL": cluster.url, "REDIS_CLUSTER": "true"}
        env["CELERY_BROKER_URL"] = f"{broker.extra['url']}/0"
        if executor == "celery":
            procs.add(start_worker(env))
        api = procs.add(start_api({**env, "EXECUTOR": executor}))
        core_scenario(str(api.extra["url"]), executor)
        # The records, indexes and events spread over the cluster's masters (16 partitions, 3 nodes).
        holding = [node for node in cluster.nodes if _keys(node.port) > 0]
        assert len(holding) >= 2


def _keys(port: int) -> int:
    import redis

    with redis.Redis(port=port) as node:
        return int(node.dbsize())


def test_a_cluster_node_restarted_mid_run_gives_503s_then_recovers_without_a_restart(procs: Procs) -> None:
    with redis_cluster(appendonly=True) as cluster:
        env = {**FAST_LEASES, "REDIS_URL": cluster.url, "REDIS_CLUSTER": "true", "REDIS_TIMEOUT": "2"}
        api = str(procs.add(start_api({**env, "EXECUTOR": "background"})).extra["url"])
        before = [submit(api, "sleep", {"seconds": 0.5})["id"] for _ in range(10)]
        cluster.stop_node(1, kill=True)
        statuses = set()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and 503 not in statuses:
            statuses |= {httpx.post(f"{api}/tasks/noop", json={}, timeout=10).status_code for _ in range(8)}
        assert 503 in statuses  # some partitions live on the stopped node: clear JSON errors, no 500
        assert 500 not in statuses
        cluster.start_node(1)
        cluster.wait_ok()

        def accepting() -> bool:
            return all(httpx.post(f"{api}/tasks/noop", json={}, timeout=10).status_code == 202 for _ in range(16))

        wait_until(accepting, timeout=30, what="the API to accept on every partition again")
        after = [submit(api, "noop")["id"] for _ in range(20)]
        assert all(wait_finished(api, task_id)["state"] == "succeeded" for task_id in after)
        # Tasks accepted before the outage end one way or the other (the AOF kept their records).
        assert all(wait_finished(api, task_id, timeout=60)["state"] in TERMINAL for task_id in before)


# -- Sentinel ------------------------------------------------------------------------------------------------


def _sentinel_url(topology_sentinels: list[tuple[str, int]], master: str) -> str:
    hosts = ",".join(f"{host}:{port}" for host, port in topology_sentinels)
    return f"redis+sentinel://{hosts}/{master}/0"


@pytest.mark.parametrize("executor", ["background", "celery"])
def test_the_core_scenario_through_sentinels(procs: Procs, executor: str) -> None:
    with sentinel_set() as topology:
        env = {**FAST_LEASES, "REDIS_URL": _sentinel_url(topology.sentinels, topology.master_name)}
        if executor == "celery":
            procs.add(start_worker(env))  # its broker is the same master, found through the sentinels too
        api = procs.add(start_api({**env, "EXECUTOR": executor}))
        core_scenario(str(api.extra["url"]), executor)


def test_a_sentinel_failover_during_a_run_loses_no_task_accepted_before_it(procs: Procs) -> None:
    with sentinel_set() as topology:
        env = {**FAST_LEASES, "REDIS_URL": _sentinel_url(topology.sentinels, topology.master_name)}
        env |= {"REDIS_WAIT_REPLICAS": "1", "REDIS_TIMEOUT": "2"}  # a 202 means a replica has the record
        procs.add(start_worker(env, concurrency=2))
        api = str(procs.add(start_api({**env, "EXECUTOR": "celery"})).extra["url"])
        accepted = [submit(api, "sleep", {"seconds": 1})["id"] for _ in range(8)]
        old = topology.master_address()
        new = topology.failover(kill=True)  # the master dies mid-run; a sentinel promotes the replica
        assert new != old
        later: list[str] = []

        def accepting() -> bool:
            resp = httpx.post(f"{api}/tasks/noop", json={}, timeout=10)
            if resp.status_code == 202:
                later.append(resp.json()["id"])
            return resp.status_code == 202

        wait_until(accepting, timeout=60, what="the API to follow the new master")
        for task_id in accepted + later:
            assert wait_finished(api, task_id, timeout=90)["state"] == "succeeded", task_id


# -- TLS and an ACL user -------------------------------------------------------------------------------------


def test_the_service_over_tls_with_an_acl_user_and_no_secret_in_its_logs(procs: Procs) -> None:
    with tls_redis() as server:
        env = {**FAST_LEASES, "REDIS_URL": server.url(0, username="bgt", password="secret")}
        worker = procs.add(start_worker(env))
        api_proc = procs.add(start_api({**env, "EXECUTOR": "celery"}))
        api = str(api_proc.extra["url"])
        done = wait_finished(api, submit(api, "noop", {"value": "over tls"})["id"])
        assert (done["state"], done["result"]) == ("succeeded", {"value": "over tls"})
        for proc in (api_proc, worker):
            assert "secret" not in proc.log()


# -- RabbitMQ as Celery's broker ------------------------------------------------------------------------------


@pytest.fixture
def rabbit(procs: Procs) -> Iterator[dict[str, str]]:
    with rabbitmq_vhost() as broker:
        yield {**FAST_LEASES, "REDIS_URL": f"{procs.add(start_redis()).extra['url']}/0", "CELERY_BROKER_URL": broker}


def test_rabbitmq_as_the_broker_runs_follows_and_cancels(procs: Procs, rabbit: dict[str, str]) -> None:
    procs.add(start_worker(rabbit))
    api = str(procs.add(start_api({**rabbit, "EXECUTOR": "celery"})).extra["url"])
    core_scenario(api, "celery")


def test_rabbitmq_a_killed_worker_s_task_is_requeued_and_a_stopped_one_finishes(
    procs: Procs, rabbit: dict[str, str]
) -> None:
    workers = {name: procs.add(start_worker(rabbit, concurrency=1, hostname=f"{name}@%h")) for name in ("a", "b")}
    api = str(procs.add(start_api({**rabbit, "EXECUTOR": "celery"})).extra["url"])
    task_id = submit(api, "sleep", {"seconds": 3})["id"]
    running = wait_for(api, task_id, lambda r: r["state"] == "running", what="running")
    victim: Proc = workers[running["worker"].split("@")[0]]
    victim.kill_group()
    done = wait_finished(api, task_id, timeout=60)
    assert (done["state"], done["attempts"]) == ("succeeded", 2)
    assert [e["error"] for e in done["attempt_errors"]] == [WORKER_LOST]
    survivor = next(proc for proc in workers.values() if proc is not victim)
    graceful = submit(api, "sleep", {"seconds": 2})["id"]
    wait_for(api, graceful, lambda r: r["state"] == "running", what="running")
    survivor.stop()  # SIGTERM: Celery's warm shutdown finishes the running task
    assert wait_finished(api, graceful, timeout=30)["state"] == "succeeded"
