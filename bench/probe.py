"""The responsiveness probe: a separate process calling `GET /health` at a steady rate.

It is a process of its own so that the load generator's work never delays the probe's own clock.
"""

from __future__ import annotations

import http.client
import multiprocessing as mp
import time
from multiprocessing.connection import Connection
from urllib.parse import urlsplit


def _probe_loop(conn: Connection) -> None:
    while True:
        command = conn.recv()
        if command[0] == "exit":
            return
        _, url, interval = command
        parts = urlsplit(url)
        client = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
        samples: list[float] = []
        errors = 0
        next_at = time.perf_counter()
        while True:
            started = time.perf_counter()
            try:
                client.request("GET", "/health")
                response = client.getresponse()
                response.read()
                if response.status != 200:
                    errors += 1
            except (OSError, http.client.HTTPException):
                errors += 1
                client.close()
            samples.append(time.perf_counter() - started)
            next_at += interval
            if conn.poll(max(0.0, next_at - time.perf_counter())):
                conn.recv()  # "stop"
                break
            next_at = max(next_at, time.perf_counter() - interval)  # never fire a burst to catch up
        client.close()
        conn.send((samples, errors))


class Probe:
    """`start(url)` … `stop()` -> (latencies in seconds, errors)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        context = mp.get_context("spawn")
        self._conn, child = context.Pipe()
        self._proc = context.Process(target=_probe_loop, args=(child,), daemon=True, name="bench-probe")
        self._proc.start()

    def start(self, url: str) -> None:
        self._conn.send(("start", url, self.interval))

    def stop(self) -> tuple[list[float], int]:
        self._conn.send(("stop",))
        samples, errors = self._conn.recv()
        return samples, errors

    def close(self) -> None:
        if self._proc.is_alive():
            self._conn.send(("exit",))
            self._proc.join(5)
        if self._proc.is_alive():
            self._proc.kill()
