"""The Redis topologies REDIS_URL can name, and the broker URL Celery needs for each.

- `redis://` or `rediss://` (TLS; `user:password@` for an ACL user): one Redis, or with REDIS_CLUSTER=true
  any node of a Redis Cluster.
- `redis+sentinel://[user:password@]host:port[,host:port...]/<master name>[/<db>][?ssl=true]`: the master a
  set of Sentinels watches. redis-py has no URL for it and kombu has another one (`sentinel://h:p;...` plus
  the `master_name` transport option), so both are derived from this one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

SENTINEL_SCHEME = "redis+sentinel"


@dataclass(frozen=True)
class SentinelUrl:
    sentinels: list[tuple[str, int]]
    master: str
    db: int
    username: str | None
    password: str | None
    ssl: bool

    @classmethod
    def parse(cls, url: str) -> SentinelUrl:
        parts = urlsplit(url)
        if parts.scheme != SENTINEL_SCHEME:
            raise ValueError(f"not a {SENTINEL_SCHEME}:// URL")
        credentials, _, hosts = parts.netloc.rpartition("@")
        username, _, password = credentials.partition(":")
        sentinels = []
        for host in hosts.split(","):
            name, _, port = host.strip().rpartition(":")
            if not name or not port.isdigit():
                raise ValueError(f"expected host:port for each sentinel, got {host!r}")
            sentinels.append((name, int(port)))
        path = [part for part in parts.path.split("/") if part]
        if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
            raise ValueError("expected /<master name>[/<db>] after the sentinels")
        query = parse_qs(parts.query)
        return cls(
            sentinels=sentinels,
            master=unquote(path[0]),
            db=int(path[1]) if len(path) == 2 else 0,
            username=unquote(username) or None,
            password=unquote(password) or None,
            ssl=query.get("ssl", ["false"])[0].lower() in ("1", "true", "yes"),
        )


def is_sentinel(url: str | None) -> bool:
    return bool(url) and str(url).startswith(SENTINEL_SCHEME + "://")


def celery_broker(url: str) -> tuple[str, dict[str, Any]]:
    """The broker URL and transport options kombu needs for `url` (a sentinel URL becomes kombu's form)."""
    if not is_sentinel(url):
        return url, {}
    parsed = SentinelUrl.parse(url)
    auth = ""
    if parsed.password is not None:
        auth = f"{parsed.username or ''}:{parsed.password}@"
    hosts = ";".join(f"sentinel://{auth}{host}:{port}/{parsed.db}" for host, port in parsed.sentinels)
    return hosts, {"master_name": parsed.master}
