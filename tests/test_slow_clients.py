"""Slow clients against a real uvicorn with the project's limits (api/serving.py, as scripts/dev and the compose
file pass them): hundreds of connections that send a request head a byte at a time leave /health answering,
past --limit-concurrency a request gets a quick 503 instead of hanging, and an idle keep-alive connection is
closed after --timeout-keep-alive. What uvicorn cannot do is shown too: it has no timeout for a request head,
so the slow connections stay open; that is the reverse proxy's job (README, "Limits and slow clients").
"""

from __future__ import annotations

import contextlib
import re
import resource
import select
import shlex
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from api.serving import LIMIT_CONCURRENCY, TIMEOUT_KEEP_ALIVE, uvicorn_flags
from tests.processes import ROOT, Proc, start_api, wait_until

SLOW = 300  # connections: below LIMIT_CONCURRENCY, and far below the file limit (checked)
HEAD = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "  # then one "a" per drip, never a blank line
DRIP = 0.5  # seconds between bytes


def test_scripts_dev_serves_with_the_limits() -> None:
    text = (ROOT / "scripts" / "dev").read_text().replace("\\\n", " ")
    [command] = [shlex.split(line) for line in text.splitlines() if line.startswith("exec ")]
    flags = uvicorn_flags()
    assert flags == [
        "--limit-concurrency",
        str(LIMIT_CONCURRENCY),
        "--timeout-keep-alive",
        str(TIMEOUT_KEEP_ALIVE),
        "--h11-max-incomplete-event-size",
        "16384",
    ]
    assert any(command[i : i + len(flags)] == flags for i in range(len(command))), command
    assert command[-1] == "$@"  # after the limits, so a flag given to scripts/dev overrides its default


class SlowClients:
    """Connections that each send a request head one byte per `drip()`, never finishing it."""

    def __init__(self, port: int, count: int) -> None:
        self.socks: list[socket.socket] = []
        self.sent = 0
        for _ in range(count):
            self.socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))

    def drip(self) -> None:
        byte = HEAD[self.sent : self.sent + 1] or b"a"
        for sock in self.socks:
            sock.send(byte)
        self.sent += 1

    def still_open(self) -> int:
        """How many the server neither answered nor closed."""
        return sum(not readable(sock) for sock in self.socks)

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


def readable(sock: socket.socket, wait: float = 0) -> bool:
    """Whether the server has sent something or closed the connection."""
    return bool(select.select([sock], [], [], wait)[0])


@contextlib.contextmanager
def slow_clients(port: int, count: int = SLOW) -> Iterator[SlowClients]:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * count:  # ours, the server's, and room to spare
        pytest.skip(f"the file limit ({soft}) is too low for {count} slow connections")
    clients = SlowClients(port, count)
    try:
        clients.drip()
        yield clients
    finally:
        clients.close()


def port_of(api: Proc) -> int:
    return int(str(api.extra["url"]).rsplit(":", 1)[1])


def timed_health(api: Proc) -> tuple[int, float, httpx.Headers]:
    started = time.monotonic()
    resp = httpx.get(f"{api.extra['url']}/health", timeout=5)
    return resp.status_code, time.monotonic() - started, resp.headers


def served_idle_connection(port: int) -> socket.socket:
    """A keep-alive connection that was answered once and now sends nothing."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(65536)
    head, body = response.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 "), head
    declared = re.search(rb"(?im)^content-length: *(\d+)", head)
    assert declared, head
    length = int(declared.group(1))
    while len(body) < length:
        body += sock.recv(65536)
    return sock


@pytest.fixture
def api() -> Iterator[Proc]:
    proc = start_api({}, extra_args=tuple(uvicorn_flags()))  # dev mode: the embedded store, no Redis needed
    yield proc
    proc.stop()


@pytest.mark.slow
def test_slow_clients_leave_health_answering_and_idle_connections_are_closed(api: Proc) -> None:
    with slow_clients(port_of(api)) as slow, served_idle_connection(port_of(api)) as idle:
        answered = time.monotonic()
        closed_after = None
        while closed_after is None and time.monotonic() - answered < TIMEOUT_KEEP_ALIVE + 3:
            status, took, _ = timed_health(api)
            assert (status, took < 1) == (200, True), took
            slow.drip()
            if readable(idle, DRIP):
                assert idle.recv(1) == b""  # closed by the server, nothing said
                closed_after = time.monotonic() - answered
        assert closed_after is not None, "the idle keep-alive connection was never closed"
        assert TIMEOUT_KEEP_ALIVE - 0.5 < closed_after < TIMEOUT_KEEP_ALIVE + 2, closed_after
        # Each slow client has now spent longer on its request head than the keep-alive timeout, and uvicorn
        # has no timeout for that: every one is still open (the reverse proxy's job).
        slow.drip()
        assert slow.still_open() == SLOW


@pytest.mark.slow
def test_past_the_limit_a_request_gets_a_quick_503_instead_of_hanging() -> None:
    limit = SLOW // 3
    api = start_api({}, extra_args=(*uvicorn_flags(), "--limit-concurrency", str(limit)))  # the last one wins
    try:
        with slow_clients(port_of(api)):
            answers: list[tuple[int, float, httpx.Headers]] = []

            def refused() -> bool:
                answers.append(timed_health(api))
                return answers[-1][0] == 503

            wait_until(refused, timeout=10, what=f"a 503 with {SLOW} slow connections open and a limit of {limit}")
            assert all(took < 1 for _, took, _ in answers), answers  # every answer quick, the 503 too
            assert answers[-1][2]["connection"] == "close"
        wait_until(lambda: timed_health(api)[0] == 200, timeout=10, what="/health to answer 200 again")
    finally:
        api.stop()
