"""Each topology of tests/topologies.py, proven with the clients the project uses: redis-py's asyncio client on
a cluster, through Sentinel and over TLS with an ACL user; kombu and Celery on TLS, Sentinel and RabbitMQ.

Cluster, Sentinel and RabbitMQ tests are marked slow (several processes, or rabbitmqctl's 0.4 s a call); the
TLS ones start one redis-server, like the unit tests' own. The failure tests print what they measured (how
long the same client took to work again, and what it raised meanwhile): run with `-s` to read it.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from celery import Celery
from kombu import Connection
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster as ClusterClient
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import AuthenticationError, RedisClusterException

from tests.processes import Proc, spawn, wait_until
from tests.topologies import (
    PORT_LIMIT,
    RedisCluster,
    SentinelSet,
    TlsRedis,
    bus_safe_port,
    rabbitmq_available,
    rabbitmq_vhost,
    redis_cluster,
    sentinel_set,
    tls_redis,
)

# Sets one key and counts calls in another: both keys must share a hash tag to run on a cluster.
COUNT_CALLS = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCR', KEYS[2])"


@contextlib.contextmanager
def logs_on_failure(logs: Callable[[], str]) -> Iterator[None]:
    """Attach the topology's logs to any failure inside, where pytest shows them with the traceback."""
    try:
        yield
    except BaseException as exc:
        exc.add_note(logs())
        raise


@dataclass
class Outage:
    """What one client saw while a topology failed: the errors it got and how long it took to work again."""

    errors: list[str] = field(default_factory=list)
    first_error: float | None = None
    recovered: float | None = None  # when the first call after the last error succeeded
    slowest: float = 0.0  # the longest single call: errors retried inside the client show up here

    def downtime(self) -> float:
        return self.recovered - self.first_error if self.recovered and self.first_error else 0.0


async def measure_outage(
    call: Callable[[], Awaitable[object]], break_it: Callable[[], object], *, limit: float = 60
) -> Outage:
    """Call `call` every 50 ms while `break_it` runs in a thread, and until it succeeds again afterwards."""
    outage, done = Outage(), anyio.Event()

    async def break_in_thread() -> None:
        await anyio.to_thread.run_sync(break_it)
        done.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(break_in_thread)
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            start = time.monotonic()
            try:
                await call()
            except Exception as exc:
                outage.errors.append(f"{type(exc).__module__}.{type(exc).__name__}: {exc}"[:160])
                outage.first_error = outage.first_error or start
                outage.recovered = None
            else:
                outage.recovered = outage.recovered or time.monotonic()
                if done.is_set():
                    break
            finally:
                outage.slowest = max(outage.slowest, time.monotonic() - start)
            await anyio.sleep(0.05)
    assert done.is_set(), "the topology did not come back in time"
    assert outage.recovered, f"the client never worked again: {outage.errors[-3:]}"
    return outage


def report(what: str, outage: Outage) -> None:
    kinds = sorted({error.split(":")[0] for error in outage.errors})
    print(
        f"\n{what}: {len(outage.errors)} failed calls over {outage.downtime():.2f} s (slowest call"
        f" {outage.slowest:.2f} s), raising {kinds}; last: {outage.errors[-1:]}"
    )


# --- ports ---------------------------------------------------------------------------------------------------


def test_bus_safe_ports_leave_room_for_the_cluster_bus() -> None:
    ports = [bus_safe_port() for _ in range(20)]
    assert len(set(ports)) == len(ports)
    assert all(port < PORT_LIMIT for port in ports)


# --- Redis Cluster -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    with redis_cluster(appendonly=True) as topology:
        yield topology


@pytest.fixture
async def cluster_client(cluster: RedisCluster) -> AsyncIterator[ClusterClient]:
    client = ClusterClient.from_url(cluster.url)
    yield client
    await client.aclose()


@pytest.mark.slow
@pytest.mark.anyio
async def test_cluster_spreads_keys_and_runs_tagged_scripts_pipelines_and_streams(
    cluster: RedisCluster, cluster_client: ClusterClient
) -> None:
    client = cluster_client
    with logs_on_failure(cluster.logs):
        keys = [f"bgt:task:{i}" for i in range(12)]
        for key in keys:
            await client.set(key, key)
        assert [await client.get(key) for key in keys] == [key.encode() for key in keys]
        assert {node_port(client, key) for key in keys} == {node.port for node in cluster.nodes}

        count_calls = client.register_script(COUNT_CALLS)  # EVALSHA, routed by its first key's slot
        assert [await count_calls(keys=["{p3}:state", "{p3}:calls"], args=["x"]) for _ in range(2)] == [1, 2]
        with pytest.raises(RedisClusterException, match="same key slot"):  # refused before it is sent
            await count_calls(keys=["{p3}:state", "{p4}:calls"], args=["x"])

        async with client.pipeline(transaction=False) as pipe:  # split per node, answers in call order
            for key, value in (("{p1}:a", "1"), ("{p2}:a", "2")):
                pipe.set(key, value)
            for key in ("{p1}:a", "{p2}:a"):
                pipe.get(key)
            pipe.execute_command("EVALSHA", count_calls.sha, 2, "{p3}:state", "{p3}:calls", "y")
            assert await pipe.execute() == [True, True, b"1", b"2", 3]

        stream = "{p3}:events"
        entry = await client.xadd(stream, {"state": "queued"})
        assert await client.xread({stream: "0"}, block=100) == [[stream.encode(), [(entry, {b"state": b"queued"})]]]
        with pytest.raises(RedisClusterException, match="same key slot"):
            await client.xread({stream: "0", "{p4}:events": "0"}, block=100)


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.parametrize("down_for", [0, 5], ids=["restarted-at-once", "down-5s"])
async def test_a_restarted_cluster_node_is_found_again_by_the_same_client(
    cluster: RedisCluster, cluster_client: ClusterClient, down_for: float
) -> None:
    """Down for 5 s, longer than the node timeout (2 s): the other masters mark it failed and refuse every key."""
    client = cluster_client

    def crash_and_restart() -> None:
        cluster.stop_node(1, kill=True)
        time.sleep(down_for)
        cluster.start_node(1)

    with logs_on_failure(cluster.logs):
        await client.initialize()
        key = next(f"k{i}" for i in range(1000) if node_port(client, f"k{i}") == cluster.nodes[1].port)
        await client.set(key, "kept")
        outage = await measure_outage(partial(client.get, key), crash_and_restart)
        report(f"cluster node SIGKILLed, restarted after {down_for} s", outage)
        assert await client.get(key) == b"kept"  # appendonly: the restarted node kept its keys
        assert outage.downtime() < down_for + 20


def node_port(client: ClusterClient, key: str) -> int:
    """The port of the master that serves `key`'s slot, as the client's slot map says."""
    node = client.get_node_from_key(key)
    assert node is not None
    return int(node.port)


# --- Sentinel ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sentinels() -> Iterator[SentinelSet]:
    with sentinel_set() as topology:
        yield topology


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.parametrize("kill", [False, True], ids=["sentinel-failover", "master-killed"])
async def test_a_sentinel_client_follows_a_failover(sentinels: SentinelSet, kill: bool) -> None:
    sentinel = Sentinel(sentinels.sentinels, socket_timeout=1)  # type: ignore[no-untyped-call]
    counter = f"bgt:writes:{uuid.uuid4().hex}"
    try:
        async with sentinel.master_for(sentinels.master_name, socket_timeout=1) as master:
            pool = master.connection_pool
            with logs_on_failure(sentinels.logs):
                await master.incr(counter)
                before = await pool.get_master_address()
                outage = await measure_outage(partial(master.incr, counter), partial(sentinels.failover, kill=kill))
                report(f"sentinel failover ({'master killed' if kill else 'SENTINEL FAILOVER'})", outage)
                assert await pool.get_master_address() != before
                assert int(await master.get(counter) or 0) >= 2
                assert outage.downtime() < 20
    finally:
        for client in sentinel.sentinels:
            await client.aclose()


@pytest.mark.slow
def test_kombu_and_celery_reach_redis_through_sentinel(sentinels: SentinelSet) -> None:
    options = {"master_name": sentinels.master_name}
    with logs_on_failure(sentinels.logs):
        with Connection(sentinels.kombu_url, transport_options=options) as conn:
            round_trip(conn)
        app = Celery("topology-check", broker=sentinels.kombu_url)
        app.conf.broker_transport_options = options
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=2)
            assert conn.transport.driver_type == "redis"


@pytest.mark.slow
@pytest.mark.parametrize("retry", [False, True], ids=["celery-default", "broker_channel_error_retry"])
def test_a_celery_worker_on_sentinel_through_a_planned_failover(
    sentinels: SentinelSet, tmp_path: Path, retry: bool
) -> None:
    """SENTINEL FAILOVER turns the old master into a replica, which ends the worker's blocked BRPOP with an
    `UNBLOCKED` error reply: a channel error to kombu, which stops a Celery 5.7 worker unless channel errors
    are retried."""
    marks, options = tmp_path / "marks.jsonl", {"master_name": sentinels.master_name}
    env = {"BROKER_URL": sentinels.kombu_url, "TRANSPORT_OPTIONS": json.dumps(options), "MARK_FILE": str(marks)}
    worker = start_probe_worker({**env, "CHANNEL_ERROR_RETRY": "1" if retry else "0"})
    client = Celery("topology-check", broker=sentinels.kombu_url)
    client.conf.broker_transport_options = options

    tag = uuid.uuid4().hex  # the queue may still hold a message that an earlier test's dead worker left

    def ran(label: str) -> bool:
        return marks.exists() and any(json.loads(line)["label"] == label for line in marks.read_text().splitlines())

    try:
        with logs_on_failure(lambda: f"{sentinels.logs()}\n{worker.log()}"):
            client.send_task("mark", args=[f"before-{tag}"])
            wait_until(partial(ran, f"before-{tag}"), timeout=20, what="the task before the failover")
            sentinels.failover()
            client.send_task("mark", args=[f"after-{tag}"])  # the publisher finds the new master by itself
            if retry:
                wait_until(partial(ran, f"after-{tag}"), timeout=30, what="the task after the failover")
                assert worker.alive()
            else:
                wait_until(lambda: not worker.alive(), timeout=30, what="the worker to stop")
                assert "UNBLOCKED force unblock from blocking operation" in worker.log()
    finally:
        worker.stop()


def start_probe_worker(env: dict[str, str]) -> Proc:
    argv = [sys.executable, "-m", "celery", "-A", "tests.probe_celery_app", "worker", "--concurrency", "1"]
    worker = spawn("probe-worker", [*argv, "--loglevel", "INFO", "--without-gossip", "--without-mingle"], env)
    wait_until(lambda: " ready." in worker.log(), timeout=60, what="the probe worker to be ready")
    return worker


def round_trip(conn: Connection) -> None:
    """Publish one message on a queue of its own and consume it back."""
    conn.ensure_connection(max_retries=2)
    queue = conn.SimpleQueue(f"bgt-topology-{uuid.uuid4().hex}")
    try:
        queue.put({"hello": "world"})
        message = queue.get(timeout=5)
        message.ack()
        assert message.payload == {"hello": "world"}
    finally:
        queue.close()


# --- TLS and an ACL user -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls() -> Iterator[TlsRedis]:
    with tls_redis() as server:
        yield server


@pytest.mark.anyio
async def test_redis_py_speaks_tls_as_the_acl_user(tls: TlsRedis) -> None:
    with logs_on_failure(tls.proc.log):
        async with Redis.from_url(tls.url()) as client:
            assert await client.acl_whoami() == "bgt"
            assert await client.set("bgt:tls", "1")
        async with Redis.from_url(tls.url(password="wrong")) as wrong:
            with pytest.raises(AuthenticationError):
                await wrong.ping()
        await anyio.lowlevel.checkpoint()  # a TLS transport closes its socket one loop turn after aclose


def test_kombu_and_celery_speak_tls_as_the_acl_user(tls: TlsRedis) -> None:
    with logs_on_failure(tls.proc.log):
        with Connection(tls.url(1)) as conn:
            round_trip(conn)
        app = Celery("topology-check", broker=tls.url(1))
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=2)
            assert isinstance(conn.ssl, dict)
            assert conn.ssl["ssl_ca_certs"] == str(tls.ca_path)


# --- RabbitMQ ------------------------------------------------------------------------------------------------


@pytest.mark.slow  # rabbitmqctl takes about 0.4 s a call
@pytest.mark.skipif(not rabbitmq_available(), reason="no local RabbitMQ (rabbitmqctl) on this machine")
def test_kombu_publishes_and_consumes_on_a_vhost_of_its_own() -> None:
    with rabbitmq_vhost() as url, Connection(url) as conn:
        round_trip(conn)
        assert conn.transport.driver_type == "amqp"
