"""What one run does: workloads and their sizes for a full run and for `--quick`."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

from bench.driver import DriveSettings, Workload

WORKLOADS = ("noop", "sleep", "cpu", "cpu_async")


def calibrate_rounds(seconds: float) -> int:
    """How many sha256 rounds (the `cpu` task's loop) take about `seconds` on this machine, right now."""
    rounds, value = 200_000, b""
    started = time.perf_counter()
    for _ in range(rounds):
        value = hashlib.sha256(value).digest()
    per_round = (time.perf_counter() - started) / rounds
    return max(1_000, round(seconds / per_round / 1_000) * 1_000)


@dataclass(frozen=True)
class Sizes:
    noop: int
    sleep: int
    sleep_seconds: float
    cpu: int
    cpu_seconds: float


@dataclass
class Plan:
    quick: bool
    workloads: tuple[str, ...]
    systems: tuple[str, ...]
    workers: int
    workers_reason: str
    worker_nice: int
    repeat: int
    sizes: Sizes
    warmup: Sizes
    drive: DriveSettings
    rate_gets: int
    rate_posts: int
    rate_connections: int
    count_tasks: int
    cpu_rounds: int = 0
    warmup_cpu_rounds: int = 0
    notes: list[str] = field(default_factory=list)

    def workload(self, name: str, *, warmup: bool = False) -> Workload:
        sizes = self.warmup if warmup else self.sizes
        rounds = self.warmup_cpu_rounds if warmup else self.cpu_rounds
        if name == "noop":
            return Workload("noop", sizes.noop, lambda i: {"value": i}, f"{sizes.noop} no-op tasks", 0.025)
        if name == "sleep":
            seconds = sizes.sleep_seconds
            return Workload(
                "sleep", sizes.sleep, lambda i: {"seconds": seconds}, f"{sizes.sleep} × sleep {seconds:g} s", 0.05
            )
        if name in ("cpu", "cpu_async"):
            kind = "a `def`" if name == "cpu" else "an `async def`"
            return Workload(
                name,
                sizes.cpu,
                lambda i: {"rounds": rounds},
                f"{sizes.cpu} × {rounds:,} sha256 rounds (~{sizes.cpu_seconds:g} s each), {kind} task",
                0.1,
            )
        raise ValueError(f"unknown workload {name!r}")


def make_plan(
    *,
    quick: bool,
    workloads: tuple[str, ...],
    systems: tuple[str, ...],
    workers: int | None,
    repeat: int | None,
    worker_nice: int = 0,
) -> Plan:
    import os

    cores = os.cpu_count() or 1
    if workers is None:
        workers, reason = cores, f"Celery's own default: one pool process per core ({cores} cores)"
    else:
        reason = f"set with --workers {workers} ({cores} cores)"
    if quick:
        sizes = Sizes(noop=100, sleep=20, sleep_seconds=0.1, cpu=4, cpu_seconds=0.05)
        warmup = Sizes(noop=10, sleep=2, sleep_seconds=0.02, cpu=1, cpu_seconds=0.01)
        drive = DriveSettings(concurrency=16, tracked=10, lanes=4, idle_probe=0.3, timeout=60)
        return Plan(
            True, workloads, systems, workers, reason, worker_nice, repeat or 1, sizes, warmup, drive, 500, 300, 16, 40
        )
    sizes = Sizes(noop=800, sleep=50, sleep_seconds=0.2, cpu=20, cpu_seconds=0.15)
    warmup = Sizes(noop=100, sleep=4, sleep_seconds=0.05, cpu=2, cpu_seconds=0.02)
    drive = DriveSettings(concurrency=16, tracked=25, lanes=4, idle_probe=0.4, timeout=120)
    return Plan(
        False, workloads, systems, workers, reason, worker_nice, repeat or 3, sizes, warmup, drive, 3000, 1500, 32, 150
    )
