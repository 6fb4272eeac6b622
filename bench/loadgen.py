"""A lean HTTP/1.1 keep-alive load generator for the request-rate measurements.

httpx spends a few hundred microseconds of its own per request, so on a 2-core machine it, not the server,
would set the pace of a "requests per second" test and squeeze every ratio towards 1. This client does
the bare minimum per request (write bytes, read status line, headers and a Content-Length body).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class RateResult:
    requests: int
    seconds: float
    statuses: dict[int, int]
    last_bodies: list[bytes]  # each connection's last response body

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> int:
        return sum(count for status, count in self.statuses.items() if 200 <= status < 300)


def request_bytes(method: str, url: str, json_body: bytes | None = None) -> bytes:
    parts = urlsplit(url)
    head = f"{method} {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
    if json_body is None:
        return (head + "\r\n").encode()
    head += f"Content-Type: application/json\r\nContent-Length: {len(json_body)}\r\n\r\n"
    return head.encode() + json_body


async def _connection(host: str, port: int, request: bytes, remaining: list[int], statuses: Counter[int]) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    body = b""
    try:
        while remaining[0] > 0:
            remaining[0] -= 1
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
            body = await reader.readexactly(length)
            statuses[status] += 1
    finally:
        writer.close()
    return body


async def hammer(url: str, request: bytes, total: int, connections: int) -> RateResult:
    """Send `request` `total` times over `connections` keep-alive connections, as fast as they answer."""
    parts = urlsplit(url)
    remaining = [total]
    statuses: Counter[int] = Counter()
    started = time.perf_counter()
    bodies = await asyncio.gather(
        *(
            _connection(parts.hostname or "127.0.0.1", parts.port or 80, request, remaining, statuses)
            for _ in range(connections)
        )
    )
    seconds = time.perf_counter() - started
    return RateResult(sum(statuses.values()), seconds, dict(statuses), [body for body in bodies if body])
