"""What the numbers were measured on: machine, versions, and how each process was started."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from typing import Any

import psutil
import redis

from bench import procs
from bench.systems import Running

_PACKAGES = ("fastapi", "starlette", "uvicorn", "uvloop", "httptools", "celery", "kombu", "redis", "pydantic", "httpx")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe(running: dict[str, Running], redis_proc: procs.Proc | None, client: redis.Redis) -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    server = client.info("server")
    load1, load5, load15 = os.getloadavg()
    return {
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "redis_server": server.get("redis_version"),
        "redis": "private redis-server started by the bench" if redis_proc else "REDIS_URL",
        "load_average_at_end": [load1, load5, load15],
        "versions": versions,
        "uvicorn_flags": " ".join(procs.UVICORN_FLAGS),
        "celery_worker_flags": " ".join(procs.CELERY_FLAGS),
        "apps": {name: system.spec.api_app for name, system in running.items()},
    }
