"""Redis command counts: `INFO commandstats` deltas, and an exact MONITOR-based attribution pass."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field

import psutil
import redis

# Commands the benchmark itself sends to look at Redis; never counted.
_OURS = {"info", "monitor", "echo", "client", "config", "llen", "select", "hello"}


def commandstats(client: redis.Redis) -> Counter[str]:
    """Calls per command since the server started (lower-case names, subcommands as `cmd|sub`)."""
    raw = client.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(stats["calls"]) for name, stats in raw.items()})


def delta(before: Counter[str], after: Counter[str]) -> Counter[str]:
    """Calls made between two snapshots, without the benchmark's own look-ups."""
    diff = Counter({name: after[name] - before.get(name, 0) for name in after})
    return Counter({name: calls for name, calls in diff.items() if calls > 0 and name.split("|")[0] not in _OURS})


@dataclass
class MonitorLog:
    """Every command Redis executed while the monitor ran: (client port or 'lua', command, key)."""

    entries: list[tuple[str, str, str]] = field(default_factory=list)


class Monitor:
    """Runs MONITOR in a thread; `stop()` sends a marker and waits until the monitor has read up to it."""

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url)
        self._marker = f"bench-marker-{uuid.uuid4()}"
        self.log = MonitorLog()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._read, name="bench-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("MONITOR did not start")

    def _read(self) -> None:
        with self._client.monitor() as monitor:  # type: ignore[no-untyped-call]
            self._ready.set()
            while True:
                info = monitor.next_command()
                parts = str(info["command"]).split(" ")
                name = parts[0].upper()
                if name == "ECHO" and self._marker in info["command"]:
                    return
                if name in ("EVALSHA", "EVAL"):
                    key = parts[3] if len(parts) > 3 else ""
                else:
                    key = parts[1] if len(parts) > 1 else ""
                source = "lua" if info.get("client_type") == "lua" else str(info.get("client_port", ""))
                self.log.entries.append((source, name, key))

    def stop(self) -> MonitorLog:
        self._client.echo(self._marker)
        self._thread.join(30)
        self._client.close()
        return self.log


def ports_by_pid(redis_port: int) -> dict[str, int]:
    """Local port -> pid of every TCP connection to the Redis server (to attribute MONITOR lines)."""
    found: dict[str, int] = {}
    for conn in psutil.net_connections(kind="tcp"):
        if conn.raddr and conn.raddr[1] == redis_port and conn.laddr and conn.pid is not None:
            found[str(conn.laddr[1])] = conn.pid
    return found
