"""The processes of one benchmark run: a private redis-server, uvicorn apps and Celery workers.

Every process gets the same settings for its kind (the fairness rules), writes its output to a log file
under the run's output folder, and is stopped (its whole process tree) when the run ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent

# One uvicorn configuration for every app under test: one process, the default event loop and HTTP parser
# (uvloop and httptools when installed, as with `uvicorn[standard]`), no access log.
UVICORN_FLAGS = ("--workers", "1", "--log-level", "warning", "--no-access-log")
# One Celery worker configuration for both Celery systems: prefork pool, no gossip/mingle/heartbeat chatter.
CELERY_FLAGS = ("-P", "prefork", "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat")
# Settings of the service that must not leak from the caller's environment into a process under test:
# every field of the settings class, plus Celery's own result backend variable (the template app's), plus
# the settings the bench sets before the service may know them (an unknown setting is ignored, not refused).
_SERVICE_ENV = {name.upper() for name in Settings.model_fields} | {
    "CELERY_RESULT_BACKEND",
    "CELERY_TASK_EVENTS",
    "TASK_EXECUTORS",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"gave up after {timeout} s waiting for {what}")


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    url: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tree(self) -> list[psutil.Process]:
        """This process and its children (a Celery worker's pool processes)."""
        try:
            parent = psutil.Process(self.pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self, timeout: float = 15) -> None:
        if not self.alive():
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            for proc in reversed(self.tree()):
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.kill()
            self.popen.wait(5)


def spawn(name: str, argv: list[str], log_dir: Path, env: Mapping[str, str] | None = None) -> Proc:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    base = {key: value for key, value in os.environ.items() if key.upper() not in _SERVICE_ENV}
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), base.get("PYTHONPATH")]))
    with log_path.open("wb") as out:
        popen = subprocess.Popen(
            argv, cwd=ROOT, env={**base, "PYTHONPATH": pythonpath, **(env or {})}, stdout=out, stderr=subprocess.STDOUT
        )
    return Proc(name, popen, log_path)


def start_redis(log_dir: Path) -> Proc:
    binary = shutil.which("redis-server")
    if not binary:
        raise SystemExit(
            "redis-server is not installed (Debian/Ubuntu: apt-get install redis-server), or set REDIS_URL"
        )
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = spawn("redis", argv, log_dir)
    proc.url = f"redis://127.0.0.1:{port}"

    def answers() -> bool:
        if not proc.alive():
            raise RuntimeError(f"redis-server exited:\n{proc.log()}")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_until(answers, timeout=10, what="redis-server")
    return proc


def start_uvicorn(name: str, app: str, env: Mapping[str, str], log_dir: Path) -> Proc:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), *UVICORN_FLAGS]
    proc = spawn(name, argv, log_dir, env)
    proc.url = f"http://127.0.0.1:{port}"
    proc.extra["port"] = port
    return proc


def wait_http(proc: Proc, path: str = "/health", timeout: float = 30) -> None:
    import httpx

    def healthy() -> bool:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.log()}")
        try:
            return httpx.get(f"{proc.url}{path}", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, timeout=timeout, what=f"{proc.name} to answer {path}")


def start_celery_worker(
    name: str,
    app: str,
    env: Mapping[str, str],
    concurrency: int,
    log_dir: Path,
    *,
    nice: int = 0,
    extra_flags: tuple[str, ...] = (),
) -> Proc:
    argv = ["nice", "-n", str(nice)] if nice else []
    argv += [sys.executable, "-m", "celery", "-A", app, "worker", "--concurrency", str(concurrency)]
    argv += [*CELERY_FLAGS, *extra_flags, "--hostname", f"{name}@%h"]
    return spawn(name, argv, log_dir, env)
