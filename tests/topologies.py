"""Redis and broker topologies beyond one Redis, for tests: a Redis Cluster, a Sentinel set, TLS with an ACL
user, and a RabbitMQ vhost of a test's own.

Real processes only, on private ports, each logging to a file under the topology's folder; every wait has a
deadline and its error quotes the logs; the context managers stop every process and remove the folder.
URL forms that work, checked by tests/test_topologies.py:

- TLS + ACL, redis-py (asyncio) and kombu/Celery alike:
  `rediss://bgt:secret@127.0.0.1:P/0?ssl_cert_reqs=required&ssl_ca_certs=/path/ca.crt`. Both read the
  `ssl_*` query parameters; use the lowercase `required` (kombu also takes `CERT_REQUIRED`, redis-py does not).
- Sentinel, redis-py: no URL (`redis+sentinel://` and `sentinel://` are refused by from_url); build
  `redis.asyncio.sentinel.Sentinel([(host, port), ...]).master_for(name)`. kombu/Celery:
  `sentinel://127.0.0.1:P1;sentinel://127.0.0.1:P2;...` with the transport option `master_name`
  (`broker_transport_options={"master_name": name}` in Celery); a worker survives a planned failover only
  with `broker_channel_error_retry=True` (see test_a_celery_worker_on_sentinel_through_a_planned_failover).
- Cluster, redis-py: `redis.asyncio.cluster.RedisCluster.from_url("redis://127.0.0.1:P")`, any node's URL.
- RabbitMQ: `amqp://guest:guest@127.0.0.1:5672/<vhost>`.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis

from tests.processes import Proc, free_port, redis_server_binary, wait_until

BUS_OFFSET = 10_000  # a cluster node also listens on port + 10000 (the cluster bus)
PORT_LIMIT = 55_000  # so that port + BUS_OFFSET stays a valid port
_handed_out: set[int] = set()  # ports given out by this process, not yet bound by their server


# --- processes and waits -------------------------------------------------------------------------------------


def bus_safe_port(attempts: int = 500) -> int:
    """A free port below 55000 whose cluster-bus port (+10000) is free too; never the same one twice."""
    for _ in range(attempts):
        port = free_port()
        if port < PORT_LIMIT and port not in _handed_out and _bindable(port + BUS_OFFSET):
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free port below {PORT_LIMIT} with a free port {BUS_OFFSET} above it")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _launch(name: str, argv: list[str], log_path: Path) -> Proc:
    """Start a process in its own session, appending its output to `log_path` (a restart keeps the history)."""
    with log_path.open("ab") as out:
        popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return Proc(name, popen, log_path)


def _tail(proc: Proc, lines: int = 25) -> str:
    return f"--- {proc.name} ({proc.log_path}) ---\n" + "\n".join(proc.log().splitlines()[-lines:])


def _wait(check: Callable[[], bool], *, timeout: float, what: str, logs: Callable[[], str]) -> None:
    """wait_until, with the topology's logs in the error: a stuck cluster or sentinel explains itself there."""
    try:
        wait_until(check, timeout=timeout, what=what, interval=0.1)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}\n{logs()}") from None


def _answers(fn: Callable[[], object]) -> Callable[[], bool]:
    """A check that counts a Redis error (not up yet, loading, refusing) as 'not yet'."""

    def check() -> bool:
        try:
            return bool(fn())
        except (redis.RedisError, OSError):
            return False

    return check


def _command(
    port: int, *args: str | int, password: str | None = None, username: str | None = None, ca: Path | None = None
) -> Any:
    """One command on a client of its own, closed at once: the topology's own checks (the tests use asyncio)."""
    with redis.Redis(
        host="127.0.0.1",
        port=port,
        username=username,
        password=password,
        ssl=ca is not None,
        ssl_ca_certs=str(ca) if ca else None,
        socket_timeout=2,
        socket_connect_timeout=2,
        decode_responses=True,
    ) as client:
        return client.execute_command(*args)


def _info_fields(text: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


# --- Redis Cluster -------------------------------------------------------------------------------------------


@dataclass
class ClusterNode:
    port: int
    dir: Path
    argv: list[str]
    proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"


@dataclass
class RedisCluster:
    """A Redis Cluster of `masters` masters (plus `replicas` replicas each), one slot range per master."""

    root: Path
    nodes: list[ClusterNode] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        """Any node's URL is enough for RedisCluster.from_url: the client discovers the rest."""
        return self.nodes[0].url

    def logs(self) -> str:
        return "\n".join(_tail(node.proc) for node in self.nodes if node.proc)

    def start_node(self, i: int, *, timeout: float = 30) -> None:
        """Start node i with its own config file and data folder, and wait until the cluster is ok again."""
        node = self.nodes[i]
        if node.proc and node.proc.alive():
            raise RuntimeError(f"cluster node {i} is already running")
        node.proc = _launch(f"cluster-node-{i}", node.argv, node.dir / "redis.log")
        _wait(_answers(partial(_command, node.port, "PING")), timeout=10, what=f"node {i} to answer", logs=self.logs)
        self.wait_ok(timeout=timeout)

    def stop_node(self, i: int, *, kill: bool = False) -> None:
        """Stop node i (SIGTERM, or SIGKILL as a crash would); the others see it fail after the node timeout."""
        node = self.nodes[i]
        if node.proc:
            node.proc.stop(signal.SIGKILL if kill else signal.SIGTERM)

    def restart_node(self, i: int, *, kill: bool = False, timeout: float = 30) -> None:
        self.stop_node(i, kill=kill)
        self.start_node(i, timeout=timeout)

    def wait_ok(self, *, timeout: float = 30) -> None:
        """Until every running node says cluster_state:ok, all slots covered, every node known."""
        running = [node for node in self.nodes if node.proc and node.proc.alive()]

        def node_ok(node: ClusterNode) -> bool:
            info = _info_fields(_command(node.port, "CLUSTER", "INFO"))
            return (
                info.get("cluster_state") == "ok"
                and info.get("cluster_slots_ok") == "16384"
                and info.get("cluster_known_nodes") == str(len(self.nodes))
            )

        _wait(
            _answers(lambda: all(node_ok(node) for node in running)),
            timeout=timeout,
            what="cluster_state:ok on every node",
            logs=self.logs,
        )

    def masters(self) -> list[int]:
        """Indexes of the nodes that are masters now (all of them without replicas)."""
        return [i for i, node in enumerate(self.nodes) if _command(node.port, "ROLE")[0] == "master"]

    def _create(self, replicas: int, timeout: float) -> None:
        argv = [_redis_cli(), "--cluster", "create", *(f"127.0.0.1:{node.port}" for node in self.nodes)]
        argv += ["--cluster-replicas", str(replicas), "--cluster-yes"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{done.stdout}{done.stderr}\n{self.logs()}")


def _redis_cli() -> str:
    found = shutil.which("redis-cli")
    if not found:
        raise RuntimeError("redis-cli is not installed (apt-get install -y redis-tools)")
    return found


@contextlib.contextmanager
def redis_cluster(
    *, masters: int = 3, replicas: int = 0, appendonly: bool = False, node_timeout_ms: int = 2000, timeout: float = 60
) -> Iterator[RedisCluster]:
    """A running cluster, created with redis-cli; with `appendonly` a restarted node keeps its keys.

    `node_timeout_ms` is how long a silent node takes to be marked failing (the default is 15 s in Redis);
    short enough for a test to see a restart, long enough not to flap on a busy 2-core machine."""
    root = Path(tempfile.mkdtemp(prefix="bgt-cluster-"))
    cluster = RedisCluster(root)
    try:
        for i in range(masters * (1 + replicas)):
            port, node_dir = bus_safe_port(), root / f"node{i}"
            node_dir.mkdir()
            argv = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(node_dir)]
            argv += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--save", ""]
            argv += ["--cluster-node-timeout", str(node_timeout_ms)]
            argv += ["--appendonly", "yes", "--appendfsync", "always"] if appendonly else ["--appendonly", "no"]
            cluster.nodes.append(ClusterNode(port, node_dir, argv))
        for i, node in enumerate(cluster.nodes):
            node.proc = _launch(f"cluster-node-{i}", node.argv, node.dir / "redis.log")
        for node in cluster.nodes:
            _wait(_answers(partial(_command, node.port, "PING")), timeout=10, what="nodes", logs=cluster.logs)
        cluster._create(replicas, timeout)
        cluster.wait_ok(timeout=timeout)
        yield cluster
    finally:
        for node in cluster.nodes:
            if node.proc:
                node.proc.stop()
            _handed_out.discard(node.port)
        shutil.rmtree(root, ignore_errors=True)


# --- Sentinel ------------------------------------------------------------------------------------------------


@dataclass
class SentinelSet:
    """One master, one replica, three sentinels (quorum 2) watching the master under `master_name`."""

    root: Path
    master_name: str
    password: str | None
    servers: list[Proc] = field(default_factory=list)  # the two data nodes, in start order
    server_ports: list[int] = field(default_factory=list)
    sentinel_procs: list[Proc] = field(default_factory=list)
    sentinel_ports: list[int] = field(default_factory=list)

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        """What redis-py's Sentinel takes."""
        return [("127.0.0.1", port) for port in self.sentinel_ports]

    @property
    def kombu_url(self) -> str:
        """kombu/Celery's broker URL: every sentinel, `;`-separated (needs transport option master_name)."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return ";".join(f"sentinel://{auth}127.0.0.1:{port}" for port in self.sentinel_ports)

    def logs(self) -> str:
        return "\n".join(_tail(proc) for proc in [*self.servers, *self.sentinel_procs])

    def master_address(self, sentinel: int = 0) -> tuple[str, int]:
        host, port = _command(self.sentinel_ports[sentinel], "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
        return str(host), int(port)

    def failover(self, *, kill: bool = False, demote: bool = True, timeout: float = 30) -> tuple[str, int]:
        """Promote the replica, by SENTINEL FAILOVER or by SIGKILLing the master; wait until every sentinel names
        the new master and it takes writes. Returns the new master's address.

        A killed master is started again as a replica of the new one. A live one is made a replica at once with
        `demote`; without it Sentinel converts it only ~10 s later, and meanwhile a redis-py Sentinel client
        keeps writing to it over its pooled connections, without an error: writes that the conversion's full
        resync then drops (530 of 723 acknowledged writes in one run here)."""
        old = self.master_address()
        old_index = self.server_ports.index(old[1])
        if kill:
            self.servers[old_index].stop(signal.SIGKILL)
        else:
            _command(self.sentinel_ports[0], "SENTINEL", "FAILOVER", self.master_name)

        def promoted() -> bool:
            named = {self.master_address(i) for i in range(len(self.sentinel_ports))}
            if len(named) != 1 or old in named:
                return False
            port = named.pop()[1]
            return bool(self._data(port, "ROLE")[0] == "master" and self._data(port, "SET", "bgt:topology:probe", 1))

        _wait(_answers(promoted), timeout=timeout, what="the sentinels to promote the replica", logs=self.logs)
        new = self.master_address()
        if kill:
            self._start_server(old_index, replica_of=new[1])
        elif demote:
            self._data(old[1], "REPLICAOF", "127.0.0.1", new[1])
        return self._wait_healthy(timeout)

    def _in_sync(self, replica_port: int, master_port: int) -> bool:
        info = self._data(replica_port, "INFO", "replication")
        return bool(info.get("master_port") == master_port and info.get("master_link_status") == "up")

    def _data(self, port: int, *args: str | int) -> Any:
        """A command on one of the data nodes (which need the password, when there is one)."""
        return _command(port, *args, password=self.password)

    def _start_server(self, i: int, *, replica_of: int | None) -> None:
        port = self.server_ports[i]
        argv = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.root)]
        argv += ["--save", "", "--appendonly", "no", "--dbfilename", f"dump-{port}.rdb"]
        argv += ["--repl-diskless-sync-delay", "0"]  # a full resync at once, not after the default 5 s
        if self.password:
            argv += ["--requirepass", self.password, "--masterauth", self.password]
        if replica_of:
            argv += ["--replicaof", "127.0.0.1", str(replica_of)]
        proc = _launch(f"redis-{port}", argv, self.root / f"redis-{port}.log")
        if i < len(self.servers):
            self.servers[i] = proc
        else:
            self.servers.append(proc)
        _wait(_answers(partial(self._data, port, "PING")), timeout=10, what=f"redis {port}", logs=self.logs)

    def _start_sentinel(self, port: int, master_port: int, down_after_ms: int, failover_timeout_ms: int) -> None:
        conf = self.root / f"sentinel-{port}.conf"  # a sentinel rewrites its config file: it must be writable
        lines = [
            f"port {port}",
            "bind 127.0.0.1",
            f"dir {self.root}",
            f"sentinel monitor {self.master_name} 127.0.0.1 {master_port} 2",
            f"sentinel down-after-milliseconds {self.master_name} {down_after_ms}",
            f"sentinel failover-timeout {self.master_name} {failover_timeout_ms}",
            f"sentinel parallel-syncs {self.master_name} 1",
        ]
        if self.password:
            lines.append(f"sentinel auth-pass {self.master_name} {self.password}")
        conf.write_text("\n".join(lines) + "\n")
        argv = [redis_server_binary(), str(conf), "--sentinel"]  # Debian ships no separate redis-sentinel
        self.sentinel_procs.append(_launch(f"sentinel-{port}", argv, self.root / f"sentinel-{port}.log"))
        self.sentinel_ports.append(port)

    def _wait_healthy(self, timeout: float) -> tuple[str, int]:
        """Until every sentinel names the same master, which has a replica in sync that the sentinels see as
        such, and the sentinels have the quorum to fail over. Returns that master's address."""

        def healthy() -> bool:
            named = {self.master_address(i) for i in range(len(self.sentinel_ports))}
            if len(named) != 1:
                return False
            master_port = named.pop()[1]
            replicas = [port for port in self.server_ports if port != master_port]
            if not any(self._in_sync(port, master_port) for port in replicas):
                return False
            for port in self.sentinel_ports:
                replicas = _command(port, "SENTINEL", "REPLICAS", self.master_name)
                if not any(_replica_ok(replica) for replica in replicas):
                    return False
                _command(port, "SENTINEL", "CKQUORUM", self.master_name)  # an error until the quorum is there
            return True

        _wait(_answers(healthy), timeout=timeout, what="a healthy sentinel set", logs=self.logs)
        return self.master_address()


def _replica_ok(replica: object) -> bool:
    """A SENTINEL REPLICAS entry (a flat name/value list, or a dict) for a replica the sentinel could promote.

    Its link status is not asked for here: a sentinel refreshes a replica's INFO only every 10 s, so the
    replica's own INFO is asked instead (see _wait_healthy)."""
    if isinstance(replica, list):
        replica = dict(zip(replica[::2], replica[1::2], strict=True))
    if not isinstance(replica, dict):
        return False
    flags = str(replica.get("flags", ""))
    return "slave" in flags and not any(bad in flags for bad in ("s_down", "o_down", "disconnected"))


@contextlib.contextmanager
def sentinel_set(
    *,
    master_name: str = "bgt",
    password: str | None = None,
    down_after_ms: int = 2000,
    failover_timeout_ms: int = 5000,
    timeout: float = 60,
) -> Iterator[SentinelSet]:
    """A master, its replica and three sentinels, ready to fail over (quorum reachable, replica in sync).

    `down_after_ms` is how long a silent master takes to be failed over. At 1000 ms a sentinel once marked the
    master it had just switched to as down one second later, and failed over a second time: 2000 is steadier."""
    root = Path(tempfile.mkdtemp(prefix="bgt-sentinel-"))
    topology = SentinelSet(root, master_name, password)
    try:
        topology.server_ports = [free_port(), free_port()]
        topology._start_server(0, replica_of=None)
        topology._start_server(1, replica_of=topology.server_ports[0])
        for _ in range(3):
            topology._start_sentinel(free_port(), topology.server_ports[0], down_after_ms, failover_timeout_ms)
        topology._wait_healthy(timeout)
        yield topology
    finally:
        for proc in [*topology.sentinel_procs, *topology.servers]:
            proc.stop()
        shutil.rmtree(root, ignore_errors=True)


# --- TLS and an ACL user -------------------------------------------------------------------------------------


@dataclass
class TlsRedis:
    """A redis-server that speaks TLS only, with the default user off and one ACL user."""

    port: int
    ca_path: Path
    username: str
    password: str
    proc: Proc

    def url(self, db: int = 0, *, username: str | None = None, password: str | None = None) -> str:
        """The one URL form both redis-py and kombu/Celery accept: verify the server against our CA."""
        user = quote(username or self.username, safe="")
        secret = quote(password or self.password, safe="")
        query = f"ssl_cert_reqs=required&ssl_ca_certs={quote(str(self.ca_path))}"
        return f"rediss://{user}:{secret}@127.0.0.1:{self.port}/{db}?{query}"


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost signed by it: (ca, cert, key).

    Explicit extensions (CA key usage, SAN, key identifiers) so that strict verifiers accept the chain too."""
    names = ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt")
    ca_key, ca, key, csr, cert = (folder / name for name in names)
    ext = folder / "server.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]  # EC keys: instant to generate
    ca_ext = ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]
    _openssl("req", "-x509", "-new", *ec, *ca_ext, "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=bgt CA")
    _openssl("req", "-new", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
             "-days", "2", "-extfile", ext)  # fmt: skip
    return ca, cert, key


def _openssl(*args: str | Path) -> None:
    binary = shutil.which("openssl")
    if not binary:
        raise RuntimeError("openssl is not installed (apt-get install -y openssl)")
    done = subprocess.run([binary, *map(str, args)], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed:\n{done.stderr}")


@contextlib.contextmanager
def tls_redis(*, username: str = "bgt", password: str = "secret", timeout: float = 10) -> Iterator[TlsRedis]:
    """Debian's redis-server 7.0 is built with TLS. No plain port (`--port 0`), clients need no certificate."""
    root = Path(tempfile.mkdtemp(prefix="bgt-tls-"))
    proc: Proc | None = None
    try:
        ca, cert, key = make_certificates(root)
        port = free_port()
        argv = [redis_server_binary(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1"]
        argv += ["--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca)]
        argv += ["--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", str(root)]
        # The same rules as `ACL SETUSER bgt on >secret ~* &* +@all`, in force before the first client.
        argv += ["--user", "default", "off", "--user", username, "on", f">{password}", "~*", "&*", "+@all"]
        proc = _launch("redis-tls", argv, root / "redis.log")
        server = TlsRedis(port, ca, username, password, proc)
        ping = partial(_command, port, "PING", username=username, password=password, ca=ca)
        _wait(_answers(ping), timeout=timeout, what="TLS redis", logs=proc.log)
        yield server
    finally:
        if proc:
            proc.stop()
        shutil.rmtree(root, ignore_errors=True)


# --- RabbitMQ ------------------------------------------------------------------------------------------------

RABBITMQ_HOST = "127.0.0.1:5672"


def rabbitmqctl(*args: str, timeout: float = 60) -> str:
    """One rabbitmqctl call (about 0.4 s each here: it boots an Erlang VM); needs root for the cookie."""
    binary = shutil.which("rabbitmqctl")
    if not binary:
        raise RuntimeError("rabbitmqctl is not installed: these tests need a local RabbitMQ (guest/guest)")
    done = subprocess.run([binary, "-q", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout.strip()


def rabbitmq_available() -> bool:
    return shutil.which("rabbitmqctl") is not None


@contextlib.contextmanager
def rabbitmq_vhost(prefix: str = "bgt-test") -> Iterator[str]:
    """A vhost of the caller's own on the local RabbitMQ, with guest allowed on it: yields its amqp:// URL and
    deletes the vhost (and every queue in it) at the end. Costs three rabbitmqctl calls, about 1.2 s."""
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@{RABBITMQ_HOST}/{quote(name, safe='')}"
    finally:
        rabbitmqctl("delete_vhost", name)


def rabbit_env(key: str) -> str:
    """A `rabbit` application setting as Erlang prints it: `{ok,1800000}`, or `undefined` when unset."""
    return rabbitmqctl("eval", f"application:get_env(rabbit, {key}).")


@contextlib.contextmanager
def rabbit_settings(**values: int) -> Iterator[None]:
    """Change `rabbit` settings of the running node (e.g. consumer_timeout, channel_tick_interval), and put
    each back afterwards as it was (unset again if it was unset). They apply to channels opened after the
    change: a channel reads consumer_timeout when it opens, and channel_tick_interval each time it re-arms
    its timer (once a minute by default, which is how often the consumer timeout is checked)."""
    before = {key: rabbit_env(key) for key in values}
    try:
        for key, value in values.items():
            rabbitmqctl("eval", f"application:set_env(rabbit, {key}, {int(value)}).")
        yield
    finally:
        for key, old in before.items():
            if old.startswith("{ok,"):
                rabbitmqctl("eval", f"application:set_env(rabbit, {key}, {old[4:-1]}).")
            else:
                rabbitmqctl("eval", f"application:unset_env(rabbit, {key}).")
