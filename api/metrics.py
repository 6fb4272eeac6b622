"""Prometheus metrics, counted from the event streams so they cover both executors and every process.

Each scrape reads what the streams gained since the last one (nothing is read between scrapes), so each API
process reports the same cluster-wide figures since it started (aggregate with `max`, not `sum`). Redis
errors are the ones this process met.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from shared.feed import Positions, TaskEvent, last_positions, read_after
from shared.keys import Keyspace

_BATCH = 1_000

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, float("inf"))
_TRACKED = 100_000  # unfinished tasks remembered for the queued/running gauges (oldest forgotten first)


class Metrics:
    """The service's metrics in their own registry (one per app, so tests can build many apps)."""

    def __init__(self, executor: str) -> None:
        self.executor = executor
        self.registry = CollectorRegistry()
        self.tasks = Counter(
            "bgt_tasks", "Tasks that entered each state", ["executor", "state"], registry=self.registry
        )
        self.queued = Gauge("bgt_tasks_queued", "Tasks waiting to start", ["executor"], registry=self.registry)
        self.running = Gauge("bgt_tasks_running", "Tasks running now", ["executor"], registry=self.registry)
        self.queue_wait = self._histogram("bgt_task_queue_wait_seconds", "From submission to start")
        self.run_time = self._histogram("bgt_task_run_seconds", "From start to end", ["state"])
        self.end_to_end = self._histogram("bgt_task_end_to_end_seconds", "From submission to end", ["state"])
        self.redis_errors = Counter(
            "bgt_redis_errors",
            "Redis commands that failed in this process",
            ["executor", "source"],
            registry=self.registry,
        )
        for source in ("api", "events", "full"):
            self.redis_errors.labels(executor, source)  # at 0 from the start, so a rate() has a base
        self._unfinished: OrderedDict[str, tuple[str, str]] = OrderedDict()  # task id -> (executor, state)
        self._positions: Positions | None = None
        self.recent = Recent()  # the last minutes of ended tasks, for the dashboard's charts

    async def start(self, redis: Any, keys: Keyspace) -> None:
        """Count from now on."""
        if self._positions is None:
            self._positions = await last_positions(redis, keys)

    async def catch_up(self, redis: Any, keys: Keyspace) -> None:
        """Count every event the streams gained since the last call (what they still keep of it)."""
        if self._positions is None:
            await self.start(redis, keys)
            return
        while events := await read_after(redis, keys, self._positions, count=_BATCH):
            for event in events:
                self.observe(event)
                self._positions[event.partition] = event.id
            if len(events) < _BATCH:
                return

    def _histogram(self, name: str, doc: str, labels: list[str] | None = None) -> Histogram:
        return Histogram(name, doc, ["executor", *(labels or [])], buckets=_BUCKETS, registry=self.registry)

    def redis_error(self, source: str) -> None:
        self.redis_errors.labels(self.executor, source).inc()

    def observe(self, event: TaskEvent) -> None:
        """Count one event: a state entered, the durations it completes, the queued and running tasks."""
        executor, state = event.executor, event.state
        self._track(event.task_id, executor, state, event.terminal)
        if event.kind != "state":
            return
        started = event.started_us or None
        if state == "running" or event.with_start:  # a short task went through `running` in the same write
            self.tasks.labels(executor, "running").inc()
            if started is not None:
                self.queue_wait.labels(executor).observe((started - event.created_us) / 1e6)
        if state != "running":
            self.tasks.labels(executor, state).inc()
        if event.terminal:
            self.end_to_end.labels(executor, state).observe((event.at_us - event.created_us) / 1e6)
            if started is not None:
                self.run_time.labels(executor, state).observe((event.at_us - started) / 1e6)
            self.recent.add(event)

    def _track(self, task_id: str, executor: str, state: str, terminal: bool) -> None:
        self._unfinished.pop(task_id, None)
        if not terminal:
            self._unfinished[task_id] = (executor, state)
            while len(self._unfinished) > _TRACKED:
                self._unfinished.popitem(last=False)

    def exposition(self) -> bytes:
        """The text format, with the queued/running gauges brought up to date first."""
        counts: dict[tuple[str, str], int] = {}
        for pair in self._unfinished.values():
            counts[pair] = counts.get(pair, 0) + 1
        for gauge, state in ((self.queued, "queued"), (self.running, "running")):
            gauge.clear()
            for (executor, seen), count in counts.items():
                if seen == state:
                    gauge.labels(executor).set(count)
            gauge.labels(self.executor).inc(0)  # the series exists (at 0) before any task
        return generate_latest(self.registry)


class Recent:
    """Ended tasks of the last `window` seconds (when, whose, how, queue wait, run time): the charts' data."""

    def __init__(self, window: float = 600.0, limit: int = 100_000) -> None:
        self.window = window
        self._ended: deque[tuple[float, str, str, float | None, float | None]] = deque(maxlen=limit)

    def add(self, event: TaskEvent) -> None:
        started = event.started_us or None
        wait = (started - event.created_us) / 1e6 if started else None
        run = (event.at_us - started) / 1e6 if started else None
        self._ended.append((event.at_us / 1e6, event.owner, event.state, wait, run))

    def series(self, now: float, owner: str | None, bucket: float = 10.0) -> list[dict[str, float | int | None]]:
        """Per `bucket` seconds of the window, oldest first: tasks ended (and failed), wait and run percentiles."""
        while self._ended and self._ended[0][0] < now - self.window:
            self._ended.popleft()
        first = now - self.window
        buckets: list[list[tuple[str, float | None, float | None]]] = [[] for _ in range(int(self.window / bucket))]
        for at, whose, state, wait, run in self._ended:
            if (owner is None or whose == owner) and at >= first:
                buckets[min(len(buckets) - 1, int((at - first) / bucket))].append((state, wait, run))
        return [
            {
                "at": first + (i + 1) * bucket,
                "ended": len(items),
                "failed": sum(1 for state, _, _ in items if state in ("failed", "lost")),
                "wait_p50": _percentile([w for _, w, _ in items if w is not None], 0.5),
                "wait_p95": _percentile([w for _, w, _ in items if w is not None], 0.95),
                "run_p50": _percentile([r for _, _, r in items if r is not None], 0.5),
                "run_p95": _percentile([r for _, _, r in items if r is not None], 0.95),
            }
            for i, items in enumerate(buckets)
        ]


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
