"""The systems under test, how to start each, and how to read a task's status from each one's API."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import procs

BENCH_TASK_MODULES = "shared.builtin_tasks,bench.tasks"
# The hybrid system's routes: CPU-bound tasks on Celery, everything else stays in the API process.
HYBRID_ROUTES = "cpu=celery,cpu_async=celery"
# Databases of the bench's Redis, as offsets from the first one. Our `background` and `celery` share the
# first (two APIs, one store); the hybrid has its own, or its worker would take the `celery` system's
# messages; the listing pass fills (and empties) one of its own.
HYBRID_DB_OFFSET = 2
LISTING_DB_OFFSET = 3
BLOG_REDIS_DB_OFFSET = 4
# Our service's switch for Celery task events (ignored by a service that does not know it yet).
_TASK_EVENTS_SETTING = ("CELERY_TASK_EVENTS", "true")


@dataclass(frozen=True)
class Status:
    done: bool
    ok: bool
    finished_wall: float | None  # when the system recorded the end, as epoch seconds
    executor: str | None = None  # where it ran, when the system says so (our record's `executor` field)


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    moment = datetime.fromisoformat(iso)
    if moment.tzinfo is None:  # Celery's date_done may be naive UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _ours(body: Mapping[str, Any]) -> Status:
    state = body["state"]
    done = state in ("succeeded", "failed", "cancelled")
    return Status(done, state == "succeeded", _epoch(body.get("finished_at")) if done else None, body.get("executor"))


def _blog(body: Mapping[str, Any]) -> Status:
    state = body["state"]
    done = state in ("succeeded", "failed")
    return Status(done, state == "succeeded", body.get("finished_at") if done else None)


def _template(body: Mapping[str, Any]) -> Status:
    state = body["task_status"]
    done = state in ("SUCCESS", "FAILURE", "REVOKED")
    return Status(done, state == "SUCCESS", _epoch(body.get("date_done")) if done else None)


@dataclass(frozen=True)
class SystemSpec:
    name: str
    label: str
    ours: bool
    baseline: str | None  # the baseline our system is compared with
    api_app: str
    worker_app: str | None
    redis_db_offset: int | None  # which database of the bench's Redis it uses (None: no Redis)
    id_field: str
    parse: Callable[[Mapping[str, Any]], Status]
    poll_read: tuple[str, str] | None = None  # (command, key prefix) of one `GET /tasks/{id}` in Redis
    notes: str = ""
    executor: str | None = None  # our service's EXECUTOR (None: a baseline)
    settings: tuple[tuple[str, str], ...] = ()  # more of our service's settings
    # How Celery task events are switched on: our setting, or the worker's `-E` flag (the template's).
    events_env: tuple[tuple[str, str], ...] = ()
    events_flags: tuple[str, ...] = ()

    def env(self, redis_base: str, redis_db: int, *, task_events: bool = False) -> dict[str, str]:
        if self.redis_db_offset is None:
            return {}
        url = f"{redis_base}/{redis_db + self.redis_db_offset}"
        extra = dict(self.events_env) if task_events else {}
        if self.executor is None:
            return {"CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": url, "REDIS_URL": url, **extra}
        return {
            "REDIS_URL": url,
            "EXECUTOR": self.executor,
            "TASK_MODULES": BENCH_TASK_MODULES,
            **dict(self.settings),
            **extra,
        }


SYSTEMS: dict[str, SystemSpec] = {
    spec.name: spec
    for spec in (
        SystemSpec(
            "background",
            "ours: background",
            True,
            "blog",
            "api.main:app",
            None,
            0,
            "id",
            _ours,
            poll_read=("GET", "bgt:"),
            notes="this project, EXECUTOR=background (FastAPI BackgroundTasks, status in Redis)",
            executor="background",
        ),
        SystemSpec(
            "celery",
            "ours: celery",
            True,
            "template",
            "api.main:app",
            "worker.celery_app",
            0,
            "id",
            _ours,
            poll_read=("GET", "bgt:"),
            notes="this project, EXECUTOR=celery (Celery worker, status in Redis, no result backend)",
            executor="celery",
            events_env=(_TASK_EVENTS_SETTING,),
        ),
        SystemSpec(
            "hybrid",
            "ours: hybrid",
            True,
            None,
            "api.main:app",
            "worker.celery_app",
            HYBRID_DB_OFFSET,
            "id",
            _ours,
            poll_read=("GET", "bgt:"),
            notes=f"this project, EXECUTOR=background with TASK_EXECUTORS={HYBRID_ROUTES} and a Celery worker "
            "(CPU-bound tasks on Celery, the rest in-process)",
            executor="background",
            settings=(("TASK_EXECUTORS", HYBRID_ROUTES),),
        ),
        SystemSpec(
            "blog",
            "blog-style",
            False,
            None,
            "bench.baselines.blog:app",
            None,
            None,
            "id",
            _blog,
            notes="BackgroundTasks.add_task + status in an in-process dict",
        ),
        SystemSpec(
            "blog-redis",
            "blog-style, Redis",
            False,
            None,
            "bench.baselines.blog_redis:app",
            None,
            BLOG_REDIS_DB_OFFSET,
            "id",
            _blog,
            poll_read=("GET", "blog:"),
            notes="the blog-style app with its dict in Redis: a SET per change (3 per task), a GET per poll",
        ),
        SystemSpec(
            "template",
            "template-style",
            False,
            None,
            "bench.baselines.template_api:app",
            "bench.baselines.template_worker",
            1,
            "task_id",
            _template,
            poll_read=("GET", "celery-task-meta-"),
            notes="`def` endpoint calling .delay(); GET reads AsyncResult from Celery's Redis result backend",
            events_flags=("-E",),
        ),
    )
}


@dataclass
class Running:
    spec: SystemSpec
    api: procs.Proc
    worker: procs.Proc | None
    redis_url: str | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.api.url

    def stop(self) -> None:
        self.api.stop()
        if self.worker:
            self.worker.stop()


def start(
    spec: SystemSpec,
    redis_base: str,
    redis_db: int,
    workers: int,
    log_dir: Path,
    *,
    nice: int = 0,
    task_events: bool = False,
) -> Running:
    """Spawn the system's processes (without waiting for them: `procs.wait_http` and a first task do that)."""
    env = spec.env(redis_base, redis_db, task_events=task_events)
    tag = f"{spec.name}-events" if task_events else spec.name
    api = procs.start_uvicorn(f"{tag}-api", spec.api_app, env, log_dir)
    worker = None
    if spec.worker_app:
        flags = spec.events_flags if task_events else ()
        worker = procs.start_celery_worker(
            f"{tag}-worker", spec.worker_app, env, workers, log_dir, nice=nice, extra_flags=flags
        )
    redis_url = f"{redis_base}/{redis_db + spec.redis_db_offset}" if spec.redis_db_offset is not None else None
    return Running(spec, api, worker, redis_url)
