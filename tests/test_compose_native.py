"""What docker-compose.yml describes, run natively: one Redis, the `api` service with 2 uvicorn processes and
the `worker` service twice, each started with the command and environment the compose file gives it.

See tests/deployment.py for the few things Docker would provide that are replaced here (addresses, `%h`).
The tests run in file order: the last one stops a worker.
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import signal
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import psutil
import pytest

from tests.deployment import (
    REQUIRED_VARIABLES,
    compose_config,
    healthcheck_passes,
    local_healthcheck,
    localize_environment,
    native_path,
    substitute,
    substitute_arg,
    wait_healthy,
)
from tests.live import get, submit, wait_finished
from tests.processes import Proc, free_port, spawn, wait_until

pytestmark = pytest.mark.slow

PASSWORD = secrets.token_hex(16)
# What an operator would put in .env: a Redis password, 2 API processes, 2 task slots per worker.
OPERATOR_ENV = {"REDIS_PASSWORD": PASSWORD, "API_WORKERS": "2", "WORKER_CONCURRENCY": "2"}
REPLICAS = ("replica-1", "replica-2")  # the host names Docker would give two `worker` containers
AUTH = {"X-API-Key": REQUIRED_VARIABLES["API_KEYS"]}  # the compose file turns authentication on


@dataclass
class Deployment:
    config: dict[str, Any]
    redis: Proc
    api: Proc
    base: str
    workers: dict[str, Proc]  # Celery node name -> the worker's main process

    def service(self, name: str) -> dict[str, Any]:
        service: dict[str, Any] = self.config["services"][name]
        return service


def start_redis_service(config: dict[str, Any]) -> tuple[Proc, str]:
    """The `redis` service's command on a private port; returns the process and its `host:port`."""
    service = config["services"]["redis"]
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="bgt-compose-redis-")
    # Later options win in redis-server: listen privately and keep the data in a scratch directory.
    argv = [*service["command"], "--port", str(port), "--bind", "127.0.0.1", "--dir", data_dir]
    proc = spawn("compose-redis", argv)
    check = local_healthcheck(service["healthcheck"]["test"], "redis-cli", f"redis-cli -p {port}")
    env = {key: value or "" for key, value in service["environment"].items()}
    wait_healthy(proc, check, env, what="redis", timeout=15)
    assert not healthcheck_passes(check, {**env, "REDISCLI_AUTH": "wrong"}), "the health check passes without Redis"
    return proc, f"127.0.0.1:{port}"


def start_api_service(config: dict[str, Any], hosts: dict[str, str]) -> tuple[Proc, str]:
    service = config["services"]["api"]
    target, port = str(service["ports"][0]["target"]), str(free_port())
    argv = substitute_arg(service["command"], "--port", target, port)
    argv = substitute_arg(argv, "--host", "0.0.0.0", "127.0.0.1")
    env = localize_environment(service["environment"], hosts)
    proc = spawn("compose-api", argv, {**env, "PATH": native_path()})
    check = local_healthcheck(service["healthcheck"]["test"], f"127.0.0.1:{target}/", f"127.0.0.1:{port}/")
    wait_healthy(proc, check, {}, what="api")
    return proc, f"http://127.0.0.1:{port}"


def start_worker_service(
    config: dict[str, Any], hosts: dict[str, str], replica: str, name: str = "worker"
) -> tuple[str, Proc]:
    """One `worker` (or `worker-cpu`) container's command; returns its Celery node name and process."""
    service = config["services"][name]
    argv = [substitute(arg, "%h", replica) if "%h" in arg else arg for arg in service["command"]]
    assert argv != service["command"], "the worker's node name no longer uses %h"
    node = argv[argv.index("--hostname") + 1]
    env = localize_environment(service["environment"], hosts)
    proc = spawn(f"compose-{replica}", argv, {**env, "PATH": native_path()})

    def ready() -> bool:
        if not proc.alive():
            raise RuntimeError(f"the worker exited:\n{proc.log()}")
        return " ready." in proc.log()

    wait_until(ready, timeout=60, what=f"worker {node} to be ready")
    return node, proc


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    config = compose_config(OPERATOR_ENV)
    started: list[Proc] = []
    try:
        redis, redis_address = start_redis_service(config)
        started.append(redis)
        hosts = {"redis:6379": redis_address}
        for name in ("api", "worker"):
            url = localize_environment(config["services"][name]["environment"], hosts)["REDIS_URL"]
            assert url == f"redis://:{PASSWORD}@{redis_address}/0", f"{name} does not reach the redis service: {url}"
        api, base = start_api_service(config, hosts)
        started.append(api)
        workers: dict[str, Proc] = {}
        for replica in REPLICAS:
            node, proc = start_worker_service(config, hosts, replica)
            started.append(proc)
            workers[node] = proc
        _, cpu_worker = start_worker_service(config, hosts, "cpu-replica", "worker-cpu")  # the `cpu` queue's
        started.append(cpu_worker)
        yield Deployment(config, redis, api, base, workers)
    finally:
        for proc in reversed(started):
            proc.stop()


def node_and_pid(record: dict[str, Any]) -> tuple[str, int]:
    """Split the record's `worker` field, `name@host:pid`."""
    match = re.fullmatch(r"(.+):(\d+)", record["worker"] or "")
    assert match, f"no worker named in {record}"
    return match.group(1), int(match.group(2))


def test_the_api_and_workers_run_from_the_compose_file(deployment: Deployment) -> None:
    api = deployment.service("api")
    assert api["command"][api["command"].index("--workers") + 1] == "2"
    children = psutil.Process(deployment.api.popen.pid).children()
    assert sum("spawn_main" in " ".join(child.cmdline()) for child in children) == 2  # uvicorn's worker processes
    assert set(deployment.workers) == {"worker@replica-1", "worker@replica-2"}

    def every_queue_consumed() -> bool:  # each worker reports itself, and the API looks, once a sweep interval
        conn = _connect(deployment.base)
        answer = json.loads(_request(conn, "GET", "/health")[1])
        conn.close()
        return bool(answer["queues_without_consumer"] == [])

    wait_until(every_queue_consumed, timeout=40, what="the API to see a consumer of every queue", interval=0.5)
    conn = _connect(deployment.base)
    health = json.loads(_request(conn, "GET", "/health")[1])
    conn.close()
    assert health == {
        "status": "ok",
        "executor": "celery",
        "redis": True,
        "store_full": False,
        "queues_without_consumer": [],
    }


def test_100_tasks_submitted_through_the_api_all_succeed_on_both_workers(deployment: Deployment) -> None:
    base = deployment.base
    ids = [submit(base, "sleep", {"seconds": 0.1}, headers=AUTH)["id"] for _ in range(100)]
    records = [wait_finished(base, task_id, timeout=120, headers=AUTH) for task_id in ids]
    assert [rec["state"] for rec in records] == ["succeeded"] * 100
    assert all(rec["result"] == {"slept": 0.1} and rec["executor"] == "celery" for rec in records)
    ran_on = [node_and_pid(rec) for rec in records]
    assert {node for node, _ in ran_on} == set(deployment.workers)
    for node, pid in ran_on:  # the pid is a pool process of that very worker
        children = {child.pid for child in psutil.Process(deployment.workers[node].popen.pid).children(recursive=True)}
        assert pid in children, f"{node}:{pid} is not a process of worker {node}"


def _connect(base: str) -> http.client.HTTPConnection:
    host, port = base.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=10)


def _request(conn: http.client.HTTPConnection, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
    headers = {**AUTH, "content-type": "application/json"} if body is not None else dict(AUTH)
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read()


def _serving_process(conn: http.client.HTTPConnection, api: Proc) -> int:
    """The uvicorn process that accepted this kept-alive connection: the one holding its other end."""
    assert conn.sock is not None
    client_end = conn.sock.getsockname()[:2]
    for proc in psutil.Process(api.popen.pid).children(recursive=True):
        for sock in proc.net_connections(kind="tcp"):
            if sock.raddr and (sock.raddr.ip, sock.raddr.port) == client_end:
                pid: int = proc.pid
                return pid
    raise AssertionError(f"no API process holds the connection from {client_end}")


def _connections_to_two_processes(deployment: Deployment) -> tuple[http.client.HTTPConnection, ...]:
    """Open kept-alive connections (16 at a time, at most 64) until two are served by different API processes."""
    by_process: dict[int, http.client.HTTPConnection] = {}
    opened: list[http.client.HTTPConnection] = []

    def open_one(_: int) -> http.client.HTTPConnection:
        conn = _connect(deployment.base)
        assert _request(conn, "GET", "/health")[0] == 200  # now accepted by one process, and kept alive
        return conn

    for _ in range(4):
        with ThreadPoolExecutor(16) as pool:
            opened += pool.map(open_one, range(16))
        for conn in opened:
            by_process.setdefault(_serving_process(conn, deployment.api), conn)
        if len(by_process) >= 2:
            break
    for conn in opened:
        if conn not in by_process.values():
            conn.close()
    assert len(by_process) >= 2, f"64 connections all went to API process {list(by_process)}"
    return tuple(by_process.values())[:2]


def test_a_task_submitted_through_one_api_process_is_read_through_another(deployment: Deployment) -> None:
    first, second = _connections_to_two_processes(deployment)
    for writer, reader in ((first, second), (second, first)):
        status, body = _request(writer, "POST", "/tasks/noop", {"value": "across processes"})
        assert status == 202
        task_id = json.loads(body)["id"]

        def read() -> dict[str, Any]:
            status, body = _request(reader, "GET", f"/tasks/{task_id}")  # noqa: B023 (used right away)
            assert status == 200, body
            record: dict[str, Any] = json.loads(body)
            return record

        wait_until(lambda: read()["state"] == "succeeded", timeout=30, what="the task to succeed, read elsewhere")
        record = read()
        assert (record["id"], record["result"]) == (task_id, {"value": "across processes"})
        assert _serving_process(writer, deployment.api) != _serving_process(reader, deployment.api)
    first.close()
    second.close()


def test_flower_answers_only_with_its_password(redis_server: Proc) -> None:
    """The `flower` service's command (profile `monitoring`), against a Redis without password."""
    config = compose_config({"FLOWER_BASIC_AUTH": "admin:pw"}, profiles=["monitoring"])
    flower = config["services"]["flower"]
    port = free_port()
    *shell, script = flower["command"]
    script = substitute(script, "--port=5555", f"--port={port} --address=127.0.0.1")
    env = localize_environment(flower["environment"], {"redis:6379": f"127.0.0.1:{redis_server.extra['port']}"})
    proc = spawn("compose-flower", [*shell, script], {**env, "PATH": native_path()})
    check = local_healthcheck(flower["healthcheck"]["test"], "127.0.0.1:5555/", f"127.0.0.1:{port}/")
    try:
        wait_healthy(proc, check, {}, what="flower")
        url = f"http://127.0.0.1:{port}/api/workers"
        assert httpx.get(url, timeout=10).status_code == 401
        assert httpx.get(url, auth=("admin", "wrong"), timeout=10).status_code == 401
        assert httpx.get(url, auth=("admin", "pw"), timeout=10).status_code == 200
    finally:
        proc.stop()


def test_a_worker_stopped_with_sigterm_loses_nothing(deployment: Deployment) -> None:
    """Docker stops a container with SIGTERM; Celery then finishes what it runs and hands back what it holds."""
    base = deployment.base
    ids = [
        submit(base, "sleep", {"seconds": 3}, headers=AUTH)["id"] for _ in range(8)
    ]  # more than the 4 slots of both workers
    victim, survivor = sorted(deployment.workers)
    caught: list[str] = []

    def victim_is_running_one() -> bool:
        records = [get(base, task_id, headers=AUTH) for task_id in ids]
        caught[:] = [r["id"] for r in records if r["state"] == "running" and node_and_pid(r)[0] == victim]
        return bool(caught)

    wait_until(victim_is_running_one, timeout=30, what=f"a task running on {victim}")  # `caught` are among `ids`
    stopped = deployment.workers[victim]
    stopped.popen.send_signal(signal.SIGTERM)
    grace = _seconds(deployment.service("worker")["stop_grace_period"])
    assert stopped.popen.wait(min(grace, 90)) == 0, stopped.log()  # it exited by itself, before Docker's SIGKILL

    records = {task_id: wait_finished(base, task_id, timeout=60, headers=AUTH) for task_id in ids}
    assert [rec["state"] for rec in records.values()] == ["succeeded"] * len(ids)
    assert all(rec["result"] == {"slept": 3} for rec in records.values())
    after = [
        wait_finished(base, submit(base, "noop", {"value": i}, headers=AUTH)["id"], headers=AUTH) for i in range(4)
    ]
    assert [(rec["state"], node_and_pid(rec)[0]) for rec in after] == [("succeeded", survivor)] * 4


def _seconds(duration: str) -> float:
    """A Compose duration as `config` prints it (`10m0s`, `1h0m0s`, `30s`) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", duration)
    assert "".join(n + u for n, u in parts) == duration, f"unexpected duration {duration!r}"
    return sum(float(number) * units[unit] for number, unit in parts)
