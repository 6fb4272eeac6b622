"""A lean HTTP/1.1 keep-alive load generator for the request-rate measurements.

httpx spends a few hundred microseconds of its own per request, so on a 2-core machine it, not the server,
would set the pace of a "requests per second" test and squeeze every ratio towards 1. This client does
the bare minimum per request (write bytes, read status line, headers and a Content-Length body).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class RateResult:
    requests: int
    seconds: float
    statuses: dict[int, int]
    last_bodies: list[bytes]  # each connection's last response body
    bodies: list[bytes] | None = None  # every response body, in no particular order (when asked for)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> int:
        return sum(count for status, count in self.statuses.items() if 200 <= status < 300)


def request_bytes(method: str, url: str, json_body: bytes | None = None) -> bytes:
    parts = urlsplit(url)
    head = (
        f"{method} {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
    )
    if json_body is None:
        return (head + "\r\n").encode()
    head += f"Content-Type: application/json\r\nContent-Length: {len(json_body)}\r\n\r\n"
    return head.encode() + json_body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    """One request on a keep-alive connection: its status and body."""
    writer.write(request)
    status_line = await reader.readline()
    status = int(status_line.split(b" ", 2)[1])
    length = None
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length is None:
        raise RuntimeError("the load generator needs responses with Content-Length")
    return status, await reader.readexactly(length)


def _endpoint(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


async def _connection(url: str, requests: Iterator[bytes], statuses: Counter[int], keep: list[bytes] | None) -> bytes:
    """Send requests taken from the shared iterator until it runs dry; the last body is returned."""
    reader, writer = await asyncio.open_connection(*_endpoint(url))
    body = b""
    try:
        for request in requests:
            status, body = await _exchange(reader, writer, request)
            statuses[status] += 1
            if keep is not None:
                keep.append(body)
    finally:
        writer.close()
    return body


async def send_all(url: str, requests: Iterable[bytes], connections: int, *, keep_bodies: bool = False) -> RateResult:
    """Send every request over `connections` keep-alive connections, each taking the next one when free."""
    shared = iter(requests)
    statuses: Counter[int] = Counter()
    keep: list[bytes] | None = [] if keep_bodies else None
    started = time.perf_counter()
    last = await asyncio.gather(*(_connection(url, shared, statuses, keep) for _ in range(connections)))
    seconds = time.perf_counter() - started
    return RateResult(sum(statuses.values()), seconds, dict(statuses), [body for body in last if body], keep)


async def hammer(url: str, request: bytes, total: int, connections: int) -> RateResult:
    """Send `request` `total` times over `connections` keep-alive connections, as fast as they answer."""
    return await send_all(url, itertools.repeat(request, total), connections)


@dataclass
class Timed:
    latencies: list[float]  # seconds, one per request
    statuses: dict[int, int]
    last_body: bytes


async def sequential(url: str, request: bytes, count: int, budget_s: float, *, warmup: int = 3) -> Timed:
    """Time `count` requests one after the other on one keep-alive connection, stopping early after `budget_s`.

    One connection and no concurrency: the latency of one client, not a rate. The budget keeps a slow
    endpoint (a listing that scans every record) from stretching the run; at least 5 requests are timed.
    """
    reader, writer = await asyncio.open_connection(*_endpoint(url))
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    body = b""
    try:
        for _ in range(warmup):
            await _exchange(reader, writer, request)
        deadline = time.perf_counter() + budget_s
        while len(latencies) < count and (len(latencies) < 5 or time.perf_counter() < deadline):
            started = time.perf_counter()
            status, body = await _exchange(reader, writer, request)
            latencies.append(time.perf_counter() - started)
            statuses[status] += 1
    finally:
        writer.close()
    return Timed(latencies, dict(statuses), body)
