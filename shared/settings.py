"""The one configuration class, read once from the environment (and `.env`)."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.redis_urls import SentinelUrl, celery_broker, is_sentinel

ExecutorName = Literal["background", "celery"]


class Settings(BaseSettings):
    """Every knob of the service; the API and the worker read the same one."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    executor: ExecutorName = "background"
    # Unset means the embedded in-memory store (fakeredis): one process, nothing to install.
    redis_url: str | None = Field(default=None, repr=False)  # may hold a password
    # Celery's transport; defaults to REDIS_URL so one Redis serves both.
    celery_broker_url: str | None = Field(default=None, repr=False)
    result_ttl_seconds: int = Field(default=7 * 24 * 3600, gt=0)
    # A running task's progress reaches Redis at most this often (seconds).
    progress_interval: float = Field(default=0.5, gt=0, le=60)
    # A running task touches its record at least this often, and learns of a cancellation then.
    heartbeat_interval: float = Field(default=2.0, gt=0, le=300)
    # Events kept in each partition's stream of task changes (the dashboard's feed), trimmed approximately...
    events_maxlen: int = Field(default=10_000, ge=100)
    # ...and for at most this many seconds (never longer than RESULT_TTL_SECONDS): what a client can resume.
    events_max_age: int = Field(default=3600, gt=0)
    # A Redis Cluster: REDIS_URL names any node. The status store then spreads over STORE_PARTITIONS slots.
    redis_cluster: bool = False
    # Partitions of the structures that span tasks (leases, indexes, event streams); default 1, 16 on a cluster.
    store_partitions: int | None = Field(default=None, ge=1, le=1024)
    # Redis connections each process may open; a request waits up to REDIS_TIMEOUT for a free one (then 503).
    redis_max_connections: int = Field(default=200, ge=2)
    # New tasks are refused (507) while Redis uses this share of its maxmemory, so accepted ones can finish.
    redis_memory_limit: float = Field(default=0.9, gt=0, le=1)
    # A task's result larger than this (JSON bytes) fails the task with ResultTooLarge: a record stays bounded.
    max_result_bytes: int = Field(default=1_048_576, gt=0)
    # After storing a new task, wait until this many replicas have it (Redis WAIT) before answering 202.
    redis_wait_replicas: int = Field(default=0, ge=0)
    # ... for at most this many milliseconds (then it answers anyway, and logs that the copy is not confirmed).
    redis_wait_timeout_ms: int = Field(default=1000, ge=1)
    # A Celery task still queued after this many seconds has its message sent again (a lost message is then
    # found; a duplicate is refused by the store's claim).
    celery_resend_after: int = Field(default=1800, ge=1)
    # Celery re-delivers a message taken by a worker that died before starting it after this many seconds.
    celery_visibility_timeout: int = Field(default=300, ge=10)
    # Workers send Celery's task events (received, started, succeeded, failed, revoked: what Flower shows) from
    # their start, instead of only once a monitor such as Flower enables them remotely. Off: they cost messages.
    celery_task_events: bool = False
    # Log lines as text or as one JSON object a line; either way a line about a task names its id.
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Where tasks run, overriding their declarations: `cpu=celery,sleep=background` (EXECUTOR for the rest).
    task_executors: Annotated[dict[str, ExecutorName], NoDecode] = {}
    # The Celery queue of each task, overriding its declaration: `cpu=cpu` (Celery's `celery` for the rest).
    task_queues: Annotated[dict[str, str], NoDecode] = {}
    # Modules whose import registers tasks (comma-separated in the environment).
    task_modules: Annotated[list[str], NoDecode] = ["shared.builtin_tasks"]
    # A task whose heartbeat is older than this is presumed dead: re-queued (Celery) or marked `lost`.
    lease_seconds: float = Field(default=30.0, gt=0)
    # How often each API process and each worker looks for expired leases.
    sweep_interval: float = Field(default=10.0, gt=0)
    # The longest any task may run (tasks may declare less); Celery's visibility timeout is derived from it.
    task_time_limit: float = Field(default=7200.0, gt=0)
    # Seconds a Redis command may take before the API answers 503 instead of hanging.
    redis_timeout: float = Field(default=5.0, gt=0)
    # Empty: no authentication (dev mode). Otherwise the keys accepted in the X-API-Key header.
    api_keys: Annotated[list[str], NoDecode] = Field(default=[], repr=False)
    # Browser origins allowed by CORS; empty means no CORS headers at all.
    cors_origins: Annotated[list[str], NoDecode] = []
    # When set, GET /metrics needs `Authorization: Bearer <METRICS_TOKEN>` (its counts cover every owner).
    metrics_token: str | None = Field(default=None, repr=False)
    # Request bodies larger than this are refused with 413.
    max_body_bytes: int = Field(default=1_048_576, gt=0)

    @field_validator("task_modules", "api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_modules(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("task_executors", "task_queues", mode="before")
    @classmethod
    def _split_pairs(cls, value: object) -> object:
        """`a=b,c=d` -> {"a": "b", "c": "d"} (a pair without `=` is left for the type check to refuse)."""
        if not isinstance(value, str):
            return value
        pairs: dict[str, str] = {}
        for part in (p.strip() for p in value.split(",") if p.strip()):
            name, sep, target = part.partition("=")
            if not sep or not name.strip() or not target.strip():
                raise ValueError(f"expected name=value pairs separated by commas, got {part!r}")
            pairs[name.strip()] = target.strip()
        return pairs

    @model_validator(mode="after")
    def _celery_needs_redis(self) -> Settings:
        if self.executor == "celery" and not self.redis_url:
            raise ValueError("EXECUTOR=celery needs REDIS_URL (the in-memory store is one process only)")
        return self

    @model_validator(mode="after")
    def _topology(self) -> Settings:
        if self.redis_cluster and not self.redis_url:
            raise ValueError("REDIS_CLUSTER=true needs REDIS_URL (any node of the cluster)")
        if self.redis_cluster and is_sentinel(self.redis_url):
            raise ValueError("REDIS_URL: a cluster is not found through Sentinels; name any node of it")
        if is_sentinel(self.redis_url):
            SentinelUrl.parse(str(self.redis_url))  # a malformed one fails here, in one line
        return self

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> Settings:
        if self.heartbeat_interval * 2 > self.lease_seconds:
            raise ValueError("HEARTBEAT_INTERVAL must be at most half of LEASE_SECONDS, or live tasks look dead")
        return self

    @property
    def broker_url(self) -> str | None:
        """Celery's transport: CELERY_BROKER_URL, else the store's Redis (kombu's form of a Sentinel URL)."""
        url = self.celery_broker_url or self.redis_url
        return celery_broker(url)[0] if url else None

    @property
    def broker_options(self) -> dict[str, Any]:
        """Transport options the broker URL needs (a Sentinel broker's master name)."""
        url = self.celery_broker_url or self.redis_url
        return celery_broker(url)[1] if url else {}

    @property
    def partitions(self) -> int:
        return self.store_partitions or (16 if self.redis_cluster else 1)

    @property
    def events_age(self) -> int:
        """Seconds the event feed keeps an entry: never longer than the records it speaks of."""
        return min(self.events_max_age, self.result_ttl_seconds)


def load_settings() -> Settings:
    """Read the environment, turning a bad configuration into one line and a non-zero exit."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(_describe(err) for err in exc.errors())
        raise SystemExit(f"configuration error: {problems}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


def _describe(err: object) -> str:
    assert isinstance(err, dict)
    loc = ".".join(str(part) for part in err.get("loc", ()))
    msg = str(err.get("msg", "")).removeprefix("Value error, ")
    return f"{loc.upper()}: {msg}" if loc else msg
