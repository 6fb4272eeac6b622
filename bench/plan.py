"""What one run does: workloads and their sizes for a full run and for `--quick`."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

from bench.driver import DriveSettings, Workload

WORKLOADS = ("noop", "sleep", "cpu", "cpu_async", "mixed")
# The cost passes after the workloads: Redis memory per kept task, listing latency with many kept, and the
# Redis commands Celery task events add (MONITOR again, with events on).
PASSES = ("memory", "listing", "events")


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
    mixed_sleep: int  # the `mixed` workload: this many `sleep` tasks (of sleep_seconds) ...
    mixed_cpu: int  # ... interleaved with this many `cpu` tasks


@dataclass(frozen=True)
class Listing:
    """The listing pass: how many finished tasks are kept at each of two sizes, and how it is timed."""

    small: int
    large: int
    requests: int  # sequential requests per endpoint and size, at most
    budget_s: float  # ... or fewer, when they take longer than this in all (a listing that scans)
    named: int = 20  # tasks of the rarely used name the `name=` filter looks for


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
    memory_tasks: int
    listing: Listing
    passes: tuple[str, ...] = PASSES
    cpu_rounds: int = 0
    warmup_cpu_rounds: int = 0
    notes: list[str] = field(default_factory=list)

    def drive_for(self, *, warmup: bool) -> DriveSettings:
        """The warm-up round is discarded: it skips most of the idle probing before each run."""
        return dataclasses.replace(self.drive, idle_probe=0.05) if warmup else self.drive

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
        if name == "mixed":
            return _mixed(sizes, rounds)
        raise ValueError(f"unknown workload {name!r}")


def _mixed(sizes: Sizes, rounds: int) -> Workload:
    """`sleep` and `cpu` tasks interleaved evenly: what a hybrid deployment is for."""
    total, cpus, seconds = sizes.mixed_sleep + sizes.mixed_cpu, sizes.mixed_cpu, sizes.sleep_seconds

    def kind(i: int) -> str:  # task i is a `cpu` one when the running share of cpu tasks steps up at i
        return "cpu" if (i + 1) * cpus // total > i * cpus // total else "sleep"

    def params(i: int) -> dict[str, Any]:
        return {"rounds": rounds} if kind(i) == "cpu" else {"seconds": seconds}

    return Workload(
        "mixed",
        total,
        params,
        f"{sizes.mixed_sleep} × sleep {seconds:g} s interleaved with {cpus} × cpu ({rounds:,} sha256 rounds, "
        f"~{sizes.cpu_seconds:g} s each)",
        0.05,
        kind=kind,
    )


def make_plan(
    *,
    quick: bool,
    workloads: tuple[str, ...],
    systems: tuple[str, ...],
    workers: int | None,
    repeat: int | None,
    worker_nice: int = 0,
    passes: tuple[str, ...] = PASSES,
    memory_tasks: int | None = None,
    listing_sizes: tuple[int, int] | None = None,
) -> Plan:
    import os

    cores = os.cpu_count() or 1
    if workers is None:
        workers, reason = cores, f"Celery's own default: one pool process per core ({cores} cores)"
    else:
        reason = f"set with --workers {workers} ({cores} cores)"
    if quick:
        small, large = listing_sizes or (1_000, 10_000)
        plan = Plan(
            True,
            workloads,
            systems,
            workers,
            reason,
            worker_nice,
            repeat or 1,
            sizes=Sizes(100, 20, 0.1, 4, 0.05, mixed_sleep=10, mixed_cpu=4),
            warmup=Sizes(10, 2, 0.02, 1, 0.01, mixed_sleep=2, mixed_cpu=1),
            drive=DriveSettings(concurrency=16, tracked=10, lanes=4, idle_probe=0.3, timeout=60),
            rate_gets=500,
            rate_posts=300,
            rate_connections=16,
            count_tasks=40,
            memory_tasks=memory_tasks or 500,
            listing=Listing(small, large, requests=200, budget_s=1.5),
        )
    else:
        small, large = listing_sizes or (10_000, 100_000)
        plan = Plan(
            False,
            workloads,
            systems,
            workers,
            reason,
            worker_nice,
            repeat or 3,
            sizes=Sizes(800, 50, 0.2, 20, 0.15, mixed_sleep=40, mixed_cpu=20),
            warmup=Sizes(100, 4, 0.05, 2, 0.02, mixed_sleep=4, mixed_cpu=2),
            drive=DriveSettings(concurrency=16, tracked=25, lanes=4, idle_probe=0.4, timeout=120),
            rate_gets=3000,
            rate_posts=1500,
            rate_connections=32,
            count_tasks=150,
            memory_tasks=memory_tasks or 5_000,
            listing=Listing(small, large, requests=200, budget_s=10.0),
        )
    plan.passes = passes
    return plan
