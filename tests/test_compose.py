"""The deployment files checked without a Docker engine: the Compose Specification schema, Docker Compose's
own loader, the Dockerfile linter, and the rules the deployment promises (health checks, scaling, no secret
in the file, every variable documented). tests/test_compose_native.py runs what the file describes.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser
from packaging.utils import canonicalize_name

from api.serving import uvicorn_flags
from shared.settings import Settings
from tests.deployment import COMPOSE_FILE, VENV_BIN, compose_config, native_path, raw_config, run_compose
from tests.locks import RUNTIME_LOCK, read_lock
from tests.processes import ROOT

SECRET = "s3cret-from-the-environment"
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)(?::?-([^}]*))?")  # ${VAR} or ${VAR:-default}, not $${...}


def service(config: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = config["services"][name]
    return found


def arg_after(argv: list[str], flag: str) -> str:
    assert flag in argv, f"{flag} missing from {argv}"
    return argv[argv.index(flag) + 1]


def check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    argv = [str(VENV_BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_the_file_validates_against_the_compose_specification() -> None:
    done = check_jsonschema(COMPOSE_FILE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_docker_compose_loads_the_file_with_and_without_flower() -> None:
    default = run_compose("config", "--services")
    assert default.returncode == 0, default.stderr
    assert sorted(default.stdout.split()) == ["api", "redis", "worker", "worker-cpu"]
    monitoring = run_compose("--profile", "monitoring", "config", "--services")
    assert monitoring.returncode == 0, monitoring.stderr
    assert sorted(monitoring.stdout.split()) == ["api", "flower", "redis", "worker", "worker-cpu"]
    rabbit = run_compose("--profile", "rabbitmq", "config", "--services")
    assert rabbit.returncode == 0, rabbit.stderr
    assert sorted(rabbit.stdout.split()) == ["api", "rabbitmq", "redis", "worker", "worker-cpu"]


def test_both_checks_reject_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    text = COMPOSE_FILE.read_text()
    broken.write_text(text.replace("  worker: &worker\n", "  worker: &worker\n    replica_count: 3\n", 1))
    assert check_jsonschema(broken).returncode != 0
    done = run_compose("config", "--quiet", file=broken)
    assert done.returncode != 0
    assert "replica_count" in done.stderr


def test_redis_never_evicts_and_its_password_comes_only_from_the_environment() -> None:
    config = compose_config({"REDIS_PASSWORD": SECRET}, profiles=["monitoring"])
    redis = service(config, "redis")
    assert re.fullmatch(r"redis:\d+(-alpine)?", redis["image"])  # the official image, major version pinned
    assert arg_after(redis["command"], "--maxmemory-policy") == "noeviction"
    assert arg_after(redis["command"], "--requirepass") == SECRET
    assert redis["environment"]["REDISCLI_AUTH"] == SECRET  # what the health check authenticates with
    assert "redis-cli ping" in redis["healthcheck"]["test"][-1]
    urls = [service(config, name)["environment"]["REDIS_URL"] for name in ("api", "worker")]
    urls.append(service(config, "flower")["environment"]["CELERY_BROKER_URL"])
    assert urls == [f"redis://:{SECRET}@redis:6379/0"] * 3

    unset = compose_config({}, profiles=["monitoring"])  # no password in the file to fall back on
    assert arg_after(service(unset, "redis")["command"], "--requirepass") == ""
    assert service(unset, "api")["environment"]["REDIS_URL"] == "redis://:@redis:6379/0"
    assert service(unset, "flower")["environment"]["FLOWER_BASIC_AUTH"] == ""


def test_the_api_runs_several_uvicorn_processes_on_celery_with_a_health_check() -> None:
    api = service(compose_config({}), "api")
    assert api["command"][:2] == ["uvicorn", "api.main:app"]
    assert int(arg_after(api["command"], "--workers")) >= 2
    assert api["environment"]["EXECUTOR"] == "celery"
    [port] = api["ports"]
    assert (port["published"], port["target"]) == ("8000", 8000)
    assert arg_after(api["command"], "--port") == str(port["target"])
    test = api["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]  # the image has python, not curl
    assert f"http://127.0.0.1:{port['target']}/ready" in test[3]  # ready, not just alive: Redis and broker answer

    tuned = service(compose_config({"API_WORKERS": "3", "API_PORT": "9000", "EXECUTOR": "background"}), "api")
    assert arg_after(tuned["command"], "--workers") == "3"
    assert tuned["ports"][0]["published"] == "9000"
    assert tuned["environment"]["EXECUTOR"] == "background"


def test_the_api_serves_with_the_limits_for_slow_clients() -> None:
    """api/serving.py's limits, as scripts/dev and the gunicorn worker have them (README: Limits and slow clients)."""
    command = service(compose_config({}), "api")["command"]
    flags = uvicorn_flags()
    assert len(flags) == 6
    for flag, value in zip(flags[::2], flags[1::2], strict=True):
        assert arg_after(command, flag) == value
    assert int(arg_after(command, "--timeout-graceful-shutdown")) > 0  # the limits did not take its place


def test_the_worker_scales_and_stops_gracefully() -> None:
    config = compose_config({"WORKER_CONCURRENCY": "7"})
    worker = service(config, "worker")
    assert "container_name" not in worker  # a fixed name would allow one container only
    assert "ports" not in worker  # so would a host port
    assert worker["command"][:4] == ["celery", "-A", "worker.celery_app", "worker"]
    assert arg_after(worker["command"], "--concurrency") == "7"
    assert "%h" in arg_after(worker["command"], "--hostname")  # each container has its own host name
    minutes = re.fullmatch(r"(\d+)m0s", worker["stop_grace_period"])
    assert minutes, worker["stop_grace_period"]
    assert int(minutes.group(1)) >= 5  # Docker's default is 10 s
    api = service(config, "api")
    assert (worker["image"], worker["build"]) == (api["image"], api["build"])  # one image for both
    api_only = {"EXECUTOR", "API_KEYS"}  # the worker needs neither, and should not hold the keys
    worker_only = {"CELERY_TASK_EVENTS"}  # sent by workers only (the API sends no task-sent event)
    shared = {key: value for key, value in worker["environment"].items() if key not in worker_only}
    assert shared == {key: value for key, value in api["environment"].items() if key not in api_only}


def test_every_service_waits_for_a_healthy_redis_and_restarts() -> None:
    config = compose_config({}, profiles=["monitoring"])
    for name, svc in config["services"].items():
        assert svc["restart"] == "unless-stopped", name
        if name not in ("redis", "rabbitmq", "flower"):
            assert svc["depends_on"] == {
                "redis": {"condition": "service_healthy", "required": True},
                # RabbitMQ, when its profile runs: then a broker the app waits for too
                "rabbitmq": {"condition": "service_healthy", "required": False},
            }, name
        if name == "flower":
            assert svc["depends_on"] == {"redis": {"condition": "service_healthy", "required": True}}, name
        if not name.startswith("worker"):  # a worker's health is its queue being drained; Celery has no HTTP port
            assert svc["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    assert not any("curl" in str(svc.get("healthcheck")) for svc in config["services"].values())


def test_flower_is_off_by_default_local_only_and_never_without_basic_auth() -> None:
    assert "flower" not in compose_config({})["services"]
    flower = service(compose_config({"FLOWER_BASIC_AUTH": "admin:pw"}, profiles=["monitoring"]), "flower")
    assert re.fullmatch(r"mher/flower:\d+\.\d+", flower["image"])
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == "admin:pw"
    assert '--basic-auth="$FLOWER_BASIC_AUTH"' in flower["command"][-1]
    [port] = flower["ports"]
    assert port["host_ip"] == "127.0.0.1"


def test_the_monitoring_command_turns_the_workers_task_events_on() -> None:
    """Compose cannot tie a variable to a profile: the README's monitoring command sets it, and it is off
    otherwise (Flower, when it runs, also switches task events on remotely)."""
    commands = [line for line in readme_section().splitlines() if "docker compose" in line and "`" not in line]
    [command] = [line for line in commands if "--profile monitoring" in line]
    assigned = dict(re.findall(r"\b([A-Z][A-Z0-9_]+)=(\S+)", command.split("docker compose")[0]))
    assert assigned["CELERY_TASK_EVENTS"] == "true"
    monitoring = compose_config(assigned, profiles=["monitoring"])
    assert service(monitoring, "worker")["environment"]["CELERY_TASK_EVENTS"] == "true"
    assert "CELERY_TASK_EVENTS" not in service(monitoring, "api")["environment"]
    assert service(compose_config({}), "worker")["environment"]["CELERY_TASK_EVENTS"] == "false"


@pytest.mark.parametrize("auth", ["", "admin", "admin:", ":pw"])
def test_flower_refuses_to_start_without_a_user_and_password(auth: str) -> None:
    flower = service(compose_config({"FLOWER_BASIC_AUTH": auth}, profiles=["monitoring"]), "flower")
    env = {"PATH": native_path(), **flower["environment"]}
    done = subprocess.run(flower["command"], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 64
    assert "Flower never runs without basic auth" in done.stderr


def env_example() -> dict[str, str]:
    """Every `VAR=value` of .env.example, commented out or not."""
    lines = (ROOT / ".env.example").read_text().splitlines()
    pairs = (re.fullmatch(r"#?\s*([A-Z_][A-Z0-9_]*)=(.*)", line.strip()) for line in lines)
    return {match.group(1): match.group(2) for match in pairs if match}


def test_env_example_documents_every_variable_with_the_files_default() -> None:
    text = json.dumps(raw_config(profiles=["monitoring"]))
    used = {name: default for name, default in VARIABLE.findall(text)}
    assert {"REDIS_PASSWORD", "API_WORKERS", "WORKER_CONCURRENCY", "FLOWER_BASIC_AUTH"} <= set(used)
    documented = env_example()
    assert sorted(documented) == sorted(used)
    assert {name: documented[name] for name in used} == used


def test_env_example_copied_to_env_changes_nothing_for_compose_or_dev_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """`cp .env.example .env` is safe: Compose gets the defaults, and `scripts/dev` (which reads .env too) still
    starts in dev mode instead of asking for a Redis."""
    as_env = run_compose("--profile", "monitoring", "config", "--format", "json", env_file=str(ROOT / ".env.example"))
    assert as_env.returncode == 0, as_env.stderr
    assert json.loads(as_env.stdout) == json.loads(
        run_compose("--profile", "monitoring", "config", "--format", "json").stdout
    )
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    settings = Settings(_env_file=ROOT / ".env.example")  # type: ignore[call-arg]
    assert settings == Settings(_env_file=None)  # type: ignore[call-arg]


def dockerfile() -> DockerfileParser:
    return DockerfileParser(str(ROOT / "Dockerfile"))


def test_the_dockerfile_passes_hadolint() -> None:
    done = subprocess.run(
        [str(VENV_BIN / "hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_is_slim_caches_its_dependencies_and_runs_unprivileged() -> None:
    parsed = dockerfile()
    assert re.fullmatch(r"python:3\.\d+-slim(-\w+)?", parsed.baseimage)
    steps = [(step["instruction"], step["value"]) for step in parsed.structure if step["instruction"] != "COMMENT"]
    copies = [i for i, (kind, _) in enumerate(steps) if kind == "COPY"]
    assert steps[copies[0]] == ("COPY", "requirements/runtime.txt ./requirements.txt")  # only the lock before
    install = next(i for i, (kind, value) in enumerate(steps) if kind == "RUN" and "pip install" in value)
    assert copies[0] < install < copies[1]  # so a code change does not reinstall the dependencies
    assert sorted(steps[i][1] for i in copies[1:]) == ["api ./api", "shared ./shared", "worker ./worker"]
    users = [value for kind, value in steps if kind == "USER"]
    assert users
    assert users[-1].split(":")[0] not in ("root", "0")
    last_run = max(i for i, (kind, _) in enumerate(steps) if kind == "RUN")
    assert steps.index(("USER", users[-1])) > last_run


def test_the_dependency_layer_installs_the_runtime_lock_with_hashes_and_nothing_else() -> None:
    """The image gets exactly the versions the tests ran with (tests/test_lock.py keeps the lock in step)."""
    steps = [step for step in dockerfile().structure if step["instruction"] in ("COPY", "RUN")]
    installs = [i for i, step in enumerate(steps) if "pip install" in step["value"]]
    assert len(installs) == 1, installs
    copy, install = steps[installs[0] - 1], steps[installs[0]]
    words = shlex.split(install["value"])
    assert words[:2] == ["pip", "install"]
    assert "--require-hashes" in words  # a file whose hash is not in the lock is refused
    assert copy["instruction"] == "COPY"
    source, target = shlex.split(copy["value"])  # relative to WORKDIR, like the path pip reads
    assert source == "requirements/runtime.txt"
    installed = words[words.index("--requirement") + 1]
    assert PurePosixPath(installed) == PurePosixPath(target)
    assert all(word.startswith("--") for word in words[2:] if word != installed)  # no package beside the lock


def runtime_distributions() -> set[str]:
    """What pip installs into the image: every package of the runtime lock."""
    return set(read_lock(RUNTIME_LOCK))


def third_party_imports() -> set[str]:
    """Top-level modules that the image's code (api/, shared/, worker/) imports from outside itself."""
    ours = {"api", "shared", "worker"}
    found: set[str] = set()
    for path in (path for package in ours for path in (ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - ours - set(sys.stdlib_module_names) - {"__future__"}


def test_the_image_installs_every_package_the_code_imports() -> None:
    """The native tests run with the dev tools installed too; this catches code needing one the image lacks."""
    installed = runtime_distributions()
    providers = metadata.packages_distributions()
    imported = third_party_imports()
    assert {"fastapi", "celery", "redis", "fakeredis"} <= imported
    missing = {module for module in imported if not {canonicalize_name(d) for d in providers[module]} & installed}
    assert not missing, f"imported by the code but not installed in the image: {sorted(missing)}"


def test_the_build_context_holds_only_what_the_image_copies() -> None:
    patterns = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert patterns[0] == "*"  # everything else (.env, .venv, .git, tests) stays out
    included = sorted(p[1:].rstrip("/") for p in patterns if p.startswith("!"))
    assert included == ["api", "requirements/runtime.txt", "shared", "worker"]


def readme_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Deploy with Docker Compose")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_the_readme_section_matches_the_file() -> None:
    section = readme_section()
    config = compose_config({}, profiles=["monitoring", "rabbitmq"])
    commands = [line.strip() for line in section.splitlines() if "docker compose" in line and "`" not in line]
    assert commands, "the README section shows no docker compose command"
    for command in commands:
        for name, _ in re.findall(r"--scale (\w+)=(\d+)", command):
            assert name in config["services"], command
            assert "ports" not in config["services"][name], command
        for profile in re.findall(r"--profile (\w+)", command):
            assert any(profile in svc.get("profiles", []) for svc in config["services"].values()), command
        for name in re.findall(r"\b([A-Z][A-Z0-9_]+)=", command):
            assert name in env_example(), command
    for name in config["services"]:
        assert f"`{name}`" in section, f"the README does not describe the {name} service"
