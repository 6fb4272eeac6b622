"""The cost passes after the workloads: memory per kept task, Celery task events, listing with many kept.

Each runs with every other system idle, and a pass that fails becomes one of the run's problems instead
of losing the run's other results. Order matters: memory first (on the databases the workloads used),
then events (which restarts the Celery systems), then listing (100k records in a database of its own,
emptied afterwards, so it never weighs on another figure).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench import count, listing, memory, procs, rates, systems
from bench.plan import Plan

# The systems that keep tasks in Redis and are compared there (the blog-style app keeps nothing in Redis).
MEMORY_SYSTEMS = ("background", "celery", "template")
EVENTS_SYSTEMS = ("celery", "template")


@dataclass
class Context:
    """What the passes need from the run: the systems (replaced when restarted), Redis, where to log."""

    plan: Plan
    running: dict[str, systems.Running]
    redis_base: str
    redis_db: int
    stats_client: redis.Redis
    redis_port: int
    private_redis: bool
    log_dir: Path
    say: Callable[[str], None]  # what the progress bar shows now
    advance: Callable[[], None]  # one progress step done
    log: Callable[[str], None]  # a line above the progress bar
    problems: list[str] = field(default_factory=list)


def steps(plan: Plan) -> int:
    """Progress steps the passes take, for the progress bar's total."""
    total = 0
    if "memory" in plan.passes:
        total += len([n for n in MEMORY_SYSTEMS if n in plan.systems])
    if "events" in plan.passes:
        total += len([n for n in EVENTS_SYSTEMS if n in plan.systems])
    if "listing" in plan.passes:
        total += 1
    return total


async def run(ctx: Context) -> dict[str, Any]:
    """Every pass the plan asks for; what each measured, and how long each took (`pass_seconds`)."""
    costs: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for name, key, measure in (
        ("memory", "memory", _memory),
        ("events", "redis_count_events", _events),
        ("listing", "listing", _listing),
    ):
        if name in ctx.plan.passes:
            started = time.perf_counter()
            result = await measure(ctx)
            if result:
                costs[key] = result
            seconds[name] = time.perf_counter() - started
            ctx.log(f"{name} pass: {seconds[name]:.0f} s")
    return {**costs, "pass_seconds": seconds} if seconds else costs


async def _listing(ctx: Context) -> dict[str, Any]:
    ctx.say("listing: starting its own API")
    try:
        return await listing.measure(
            ctx.redis_base, ctx.redis_db, ctx.log_dir, ctx.plan.listing, private_redis=ctx.private_redis, say=ctx.say
        )
    except Exception as exc:  # the pass is lost, not the run's other results
        ctx.problems.append(f"listing pass: {exc}")
        return {}
    finally:
        ctx.advance()


async def _memory(ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in MEMORY_SYSTEMS:
        if name not in ctx.running:
            continue
        ctx.say(f"Redis memory per kept task on {name}")
        try:
            out[name] = await memory.measure(ctx.running[name], ctx.plan.memory_tasks)
        except Exception as exc:  # the pass is lost, not the run's other results
            ctx.problems.append(f"memory pass on {name}: {exc}")
        ctx.advance()
    return out


async def _events(ctx: Context) -> dict[str, Any]:
    """The MONITOR count again, each Celery system restarted with task events on (and left that way)."""
    names = [name for name in EVENTS_SYSTEMS if name in ctx.running]
    ctx.say("restarting " + ", ".join(names) + " with task events on")
    for name in names:  # all restarted at once: their start-ups overlap
        ctx.running[name].stop()
        ctx.running[name] = systems.start(
            ctx.running[name].spec,
            ctx.redis_base,
            ctx.redis_db,
            ctx.plan.workers,
            ctx.log_dir,
            nice=ctx.plan.worker_nice,
            task_events=True,
        )
    out: dict[str, Any] = {}
    for name in names:
        ctx.say(f"counting Redis commands (MONITOR) on {name} with task events on")
        system = ctx.running[name]
        try:
            procs.wait_http(system.api)
            await rates.finished_task(system)
            counted = await count.count(system, ctx.plan.count_tasks, ctx.stats_client, ctx.redis_port)
        except Exception as exc:  # the pass is lost, not the run's other results
            ctx.problems.append(f"events pass on {name}: {exc}")
        else:
            switch = [f"{key}={value}" for key, value in system.spec.events_env]
            if system.spec.events_flags:
                switch.append(f"worker `{' '.join(system.spec.events_flags)}`")
            out[name] = {**counted, "events_switch": ", ".join(switch)}
        ctx.advance()
    return out
