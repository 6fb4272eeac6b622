"""One measured run: a workload of N tasks against one system, over HTTP with httpx, with every metric.

Submitters keep `concurrency` POSTs in flight. A sample of tasks is followed by its own polling client
(every `workload.poll_interval`) to see when a client first learns of the end; every other task is read by sweep
lanes that walk the tasks in submission order, so the reading costs about one GET per task. Throughput,
makespan and the recorded end-to-end latency use the finish time each system stores with the task.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil
import redis

from bench import redisstats
from bench.probe import Probe
from bench.stats import latency_summary
from bench.systems import Running


@dataclass(frozen=True)
class Workload:
    name: str
    tasks: int
    params: Callable[[int], dict[str, Any]]
    description: str
    poll_interval: float  # seconds between two polls of one task, as a client would for tasks this long
    kind: Callable[[int], str] | None = None  # which task the i-th one is, when not all are `name`

    def task_name(self, index: int) -> str:
        return self.kind(index) if self.kind else self.name


@dataclass(frozen=True)
class DriveSettings:
    concurrency: int  # POSTs in flight
    tracked: int  # tasks followed by their own polling client
    lanes: int  # sweep lanes reading the other tasks' outcomes
    idle_probe: float  # seconds of probing before the run, with nothing running
    timeout: float  # a run that has not finished by then fails


@dataclass
class _Task:
    index: int
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    sent_wall: float = 0.0
    sent: float = 0.0
    accepted: float | None = None
    task_id: str | None = None
    seen_done: float | None = None
    finished_wall: float | None = None
    ok: bool | None = None
    error: str | None = None
    executor: str | None = None  # where it ran, if the system says


class _Resources:
    """CPU seconds of a process tree between start and stop, and the peak RSS of its main process."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak_rss = 0
        self._cpu0 = 0.0

    def tree_cpu(self) -> float:
        total = 0.0
        for proc in [self.proc, *self.proc.children(recursive=True)]:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total

    def start(self) -> None:
        self._cpu0 = self.tree_cpu()
        self.sample()

    def sample(self) -> None:
        self.peak_rss = max(self.peak_rss, self.proc.memory_info().rss)

    def cpu(self) -> float:
        return self.tree_cpu() - self._cpu0


async def _sample_rss(resources: _Resources, stop: asyncio.Event) -> None:
    while not stop.is_set():
        resources.sample()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)


async def run_once(
    system: Running, workload: Workload, settings: DriveSettings, probe: Probe, stats_client: redis.Redis
) -> dict[str, Any]:
    """Run `workload` once against `system` and return this run's metrics."""
    spec = system.spec
    # Idle: the probe alone, and the Redis commands that happen with nothing to do (idle workers' polling).
    idle_stats = redisstats.commandstats(stats_client)
    idle_started = time.perf_counter()
    probe.start(system.url)
    await asyncio.sleep(settings.idle_probe)
    idle_samples, idle_errors = probe.stop()
    idle_delta = redisstats.delta(idle_stats, redisstats.commandstats(stats_client))
    idle_seconds = time.perf_counter() - idle_started
    idle_rate = sum(n for name, n in idle_delta.items() if name != "ping") / idle_seconds

    tasks = [_Task(i) for i in range(workload.tasks)]
    tracked = {round(k * (workload.tasks - 1) / max(1, settings.tracked - 1)) for k in range(settings.tracked)}
    tracked = {i for i in tracked if i < workload.tasks}
    pending = iter(tasks)
    trackers: list[asyncio.Task[None]] = []
    gets = 0
    limits = httpx.Limits(max_connections=settings.concurrency + settings.tracked + settings.lanes + 4)

    async with httpx.AsyncClient(base_url=system.url, limits=limits, timeout=settings.timeout) as client:

        async def read(task: _Task) -> bool:
            nonlocal gets
            gets += 1
            resp = await client.get(f"/tasks/{task.task_id}")
            if resp.status_code != 200:
                task.error = f"GET {resp.status_code}"
                return True
            status = spec.parse(resp.json())
            if status.done:
                task.ok, task.finished_wall, task.executor = status.ok, status.finished_wall, status.executor
            return status.done

        async def track(task: _Task) -> None:
            while not await read(task):  # noqa: ASYNC110 (polling over HTTP is what is measured)
                await asyncio.sleep(workload.poll_interval)
            task.seen_done = time.perf_counter()

        async def submit() -> None:
            for task in pending:
                task.sent_wall, task.sent = time.time(), time.perf_counter()
                try:
                    resp = await client.post(
                        f"/tasks/{workload.task_name(task.index)}", json=workload.params(task.index)
                    )
                except httpx.HTTPError as exc:
                    task.error = f"POST {type(exc).__name__}"
                else:
                    task.accepted = time.perf_counter()
                    if resp.status_code == 202:
                        task.task_id = resp.json()[spec.id_field]
                        if task.index in tracked:
                            trackers.append(asyncio.create_task(track(task)))
                    else:
                        task.error = f"POST {resp.status_code}"
                task.ready.set()

        async def sweep(lane: int) -> None:
            for task in tasks[lane :: settings.lanes]:
                await task.ready.wait()
                if task.task_id is None or task.index in tracked:
                    continue
                while not await read(task):  # noqa: ASYNC110 (polling over HTTP is what is measured)
                    await asyncio.sleep(workload.poll_interval)

        resources = _Resources(system.api.pid)
        workers = _Resources(system.worker.pid) if system.worker else None
        before = redisstats.commandstats(stats_client)
        resources.start()
        if workers:
            workers.start()
        stop_sampler = asyncio.Event()
        sampler = asyncio.create_task(_sample_rss(resources, stop_sampler))
        probe.start(system.url)
        started, client_cpu0 = time.perf_counter(), time.process_time()
        try:
            async with asyncio.timeout(settings.timeout):
                await asyncio.gather(
                    *(submit() for _ in range(settings.concurrency)), *(sweep(n) for n in range(settings.lanes))
                )
                await asyncio.gather(*trackers)
        finally:
            wall = time.perf_counter() - started
            client_cpu = time.process_time() - client_cpu0
            run_samples, run_errors = probe.stop()
            stop_sampler.set()
            await sampler
            for tracker in trackers:
                tracker.cancel()
        api_cpu = resources.cpu()
        worker_cpu = workers.cpu() if workers else None
        after = redisstats.commandstats(stats_client)

    commands = redisstats.delta(before, after)
    pings = commands.pop("ping", 0)
    noise = idle_rate * wall
    ok = [t for t in tasks if t.ok]
    finished = [t.finished_wall for t in ok if t.finished_wall is not None]
    first_sent = min(t.sent_wall for t in tasks)
    makespan = max(finished) - first_sent if finished else None
    accepted = [t.accepted for t in tasks if t.accepted is not None]
    submit_window = max(accepted) - min(t.sent for t in tasks) if accepted else None
    total_commands = sum(commands.values())
    by_kind = _by_kind(workload, ok) if workload.kind else None
    return {
        "tasks": workload.tasks,
        "succeeded": len(ok),
        "errors": sorted({t.error for t in tasks if t.error} | {t.error for t in tasks if t.ok is False and t.error}),
        "failed": sum(1 for t in tasks if t.ok is False or t.error),
        "wall_s": wall,
        "submit": latency_summary([t.accepted - t.sent for t in tasks if t.accepted is not None and t.task_id]),
        "submit_rate_per_s": workload.tasks / submit_window if submit_window else None,
        "e2e_recorded": latency_summary([t.finished_wall - t.sent_wall for t in ok if t.finished_wall is not None]),
        "e2e_seen": latency_summary([t.seen_done - t.sent for t in ok if t.seen_done is not None]),
        **({"by_kind": by_kind} if by_kind else {}),
        "makespan_s": makespan,
        "throughput_per_s": len(ok) / makespan if makespan else None,
        "probe_idle": {**latency_summary(idle_samples), "errors": idle_errors},
        "probe_run": {**latency_summary(run_samples), "errors": run_errors},
        "gets_per_task": gets / workload.tasks,
        "redis": {
            "commands_per_task": max(0.0, total_commands - noise) / workload.tasks,
            "commands_total": total_commands,
            "idle_noise_subtracted": noise,
            "pings": pings,
            "by_command": dict(commands.most_common()),
        },
        "api_cpu_s": api_cpu,
        "api_cpu_per_task_ms": api_cpu / workload.tasks * 1000,
        "api_peak_rss_mb": resources.peak_rss / 2**20,
        "worker_cpu_s": worker_cpu,
        # the load generator's own CPU over the run / wall time: near 1.0 means httpx, not the system, set the pace
        "client_cpu_share": client_cpu / wall,
    }


def _by_kind(workload: Workload, ok: list[_Task]) -> dict[str, Any]:
    """Per task name: recorded end-to-end latency, and where the tasks ran (our record's `executor`)."""
    out: dict[str, Any] = {}
    for name in sorted({workload.task_name(t.index) for t in ok}):
        mine = [t for t in ok if workload.task_name(t.index) == name]
        ran_on = Counter(t.executor or "unknown" for t in mine)
        out[name] = {
            "e2e_recorded": latency_summary(
                [t.finished_wall - t.sent_wall for t in mine if t.finished_wall is not None]
            ),
            "ran_on": dict(ran_on.most_common()),
        }
    return out
