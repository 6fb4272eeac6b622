"""Real processes for the tests: a private redis-server, uvicorn, gunicorn, celery worker; each wait has a deadline."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.procs import free_port as free_port  # re-exported: the tests start processes the same way
from bench.procs import wait_until as wait_until
from shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Proc:
    """A child process whose output goes to a file, shown when a test fails."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    extra: dict[str, object] = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill_group(self) -> None:
        """SIGKILL the process and all its children at once, as a crash or an OOM kill would."""
        os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        """Signal the process, wait for it, then kill what it left in its session (a wrapper's child, such as
        the program `faketime` runs, or a pool child), so nothing outlives the test."""
        if self.alive():
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        return self.popen.returncode


# Short leases, so that sweepers act within seconds, and the tasks the fault tests run.
FAST_LEASES = {
    "LEASE_SECONDS": "2",
    "HEARTBEAT_INTERVAL": "0.3",
    "SWEEP_INTERVAL": "0.3",
    "PROGRESS_INTERVAL": "0.2",
    "TASK_MODULES": "shared.builtin_tasks,tests.chaos_tasks",
}


class Procs:
    """Processes a test started; all stopped at teardown (the `procs` fixture), whatever happened."""

    def __init__(self) -> None:
        self.started: list[Proc] = []

    def add(self, proc: Proc) -> Proc:
        self.started.append(proc)
        return proc


def clean_environ() -> dict[str, str]:
    """The test runner's environment without any of the service's settings, so each test sets its own."""
    ours = {name.upper() for name in Settings.model_fields}
    return {key: value for key, value in os.environ.items() if key.upper() not in ours}


def spawn(name: str, argv: list[str], env: Mapping[str, str] | None = None) -> Proc:
    log_path = Path(tempfile.mkdtemp(prefix=f"bgt-{name}-")) / "output.log"
    full_env = {**clean_environ(), "PYTHONPATH": str(ROOT), **(env or {})}
    with log_path.open("wb") as out:
        # Its own session, so a test can signal the whole process group (a worker and its pool children).
        popen = subprocess.Popen(
            argv, cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Proc(name, popen, log_path)


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
    return found


def start_redis(port: int | None = None, *, data_dir: Path | None = None, password: str | None = None) -> Proc:
    """A private redis-server that tests may flush, stop or kill; with `data_dir` it keeps an AOF there."""
    port = port or free_port()
    argv = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    if data_dir is None:
        argv += ["--appendonly", "no"]
    else:
        argv += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(data_dir)]
    if password:
        argv += ["--requirepass", password]
    proc = spawn("redis", argv)
    proc.extra["url"] = f"redis://:{password}@127.0.0.1:{port}" if password else f"redis://127.0.0.1:{port}"
    proc.extra["port"] = port

    def answers() -> bool:
        if not proc.alive():
            raise RuntimeError(f"redis-server exited:\n{proc.log()}")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_until(answers, timeout=10, what=f"redis-server on port {port}")
    return proc


def start_api(
    env: Mapping[str, str],
    *,
    workers: int = 1,
    extra_args: tuple[str, ...] = (),
    log_level: str = "warning",
    wrap: tuple[str, ...] = (),
) -> Proc:
    """uvicorn with the app; `wrap` runs it under another command (e.g. `faketime +45s` for a wrong clock)."""
    port = free_port()
    argv = [*wrap, sys.executable, "-m", "uvicorn", "api.main:app", "--port", str(port), "--workers", str(workers)]
    proc = spawn("api", [*argv, "--log-level", log_level, *extra_args], env)
    url = f"http://127.0.0.1:{port}"
    proc.extra["url"] = url

    def healthy() -> bool:
        if not proc.alive():
            raise RuntimeError(f"the API exited:\n{proc.log()}")
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, timeout=30, what="the API to answer /health")
    return proc


def start_gunicorn(env: Mapping[str, str], worker_class: str, *, workers: int = 2, graceful_timeout: int = 30) -> Proc:
    """gunicorn serving the app with `worker_class`; at log level info, so each worker's shutdown shows."""
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "api.main:app", "--worker-class", worker_class]
    argv += ["--workers", str(workers), "--bind", f"127.0.0.1:{port}", "--graceful-timeout", str(graceful_timeout)]
    # No control socket: gunicorn would put one in the home directory, shared by every gunicorn a test starts.
    proc = spawn("gunicorn", [*argv, "--no-control-socket", "--log-level", "info"], env)
    url = f"http://127.0.0.1:{port}"
    proc.extra["url"] = url

    def healthy() -> bool:
        if not proc.alive():
            raise RuntimeError(f"gunicorn exited:\n{proc.log()}")
        if proc.log().count("Application startup complete.") < workers:
            return False
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, timeout=30, what="gunicorn to answer /health")
    return proc


def start_worker(
    env: Mapping[str, str],
    *,
    concurrency: int = 2,
    hostname: str = "w1@%h",
    queues: str | None = None,
    app: str | None = None,
) -> Proc:
    argv = [sys.executable, "-m", "celery", "-A", app or "worker.celery_app", "worker", "--loglevel", "INFO"]
    argv += ["--concurrency", str(concurrency), "--hostname", hostname, "--without-gossip", "--without-mingle"]
    if queues:
        argv += ["--queues", queues]
    proc = spawn("worker", argv, env)

    def ready() -> bool:
        if not proc.alive():
            raise RuntimeError(f"the worker exited:\n{proc.log()}")
        return " ready." in proc.log()

    wait_until(ready, timeout=60, what="the celery worker to be ready")
    return proc
