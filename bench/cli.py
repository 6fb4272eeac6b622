"""`python -m bench`: bring everything up, warm up, run interleaved repetitions, count, report."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from bench import count, driver, environment, passes, procs, rates, report, systems
from bench.plan import PASSES, WORKLOADS, Plan, calibrate_rounds, make_plan
from bench.probe import Probe

console = Console(stderr=True)
if not console.is_terminal:
    console.width = 200  # a log file or CI: do not squeeze the summary tables to 80 columns


def _csv(choices: tuple[str, ...], *, none: bool = False) -> Any:
    """A comma-separated subset of `choices` (with `none=True`, the word `none` is the empty one)."""

    def parse(text: str) -> tuple[str, ...]:
        if none and text.strip() == "none":
            return ()
        picked = tuple(part.strip() for part in text.split(",") if part.strip())
        unknown = [part for part in picked if part not in choices]
        if unknown or not picked:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}" + (" (or none)" if none else ""))
        return picked

    return parse


def _sizes(text: str) -> tuple[int, int]:
    try:
        small, large = (int(part.replace("_", "")) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("two numbers, SMALL,LARGE (e.g. 10000,100000)") from None
    if not 0 < small < large:
        raise argparse.ArgumentTypeError("need 0 < SMALL < LARGE")
    return small, large


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench",
        description="BackgroundTasks vs Celery, ours vs the apps people write today: one run, one report.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run of about a minute and a half (small sizes, one repetition)"
    )
    parser.add_argument(
        "--workloads", type=_csv(WORKLOADS), default=WORKLOADS, help=f"comma-separated, of {','.join(WORKLOADS)}"
    )
    parser.add_argument(
        "--systems", type=_csv(tuple(systems.SYSTEMS)), default=tuple(systems.SYSTEMS), help="comma-separated"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="Celery pool processes per worker (default: one per core)"
    )
    parser.add_argument(
        "--worker-nice",
        type=int,
        default=0,
        metavar="N",
        help="start every Celery worker with `nice -n N` (default 0: same priority as the API)",
    )
    parser.add_argument("--repeat", type=int, default=None, help="measured repetitions (default 3, --quick 1)")
    parser.add_argument(
        "--passes",
        type=_csv(PASSES, none=True),
        default=PASSES,
        help=f"cost passes after the workloads, comma-separated of {','.join(PASSES)}, or none (default: all)",
    )
    parser.add_argument(
        "--memory-tasks",
        type=int,
        default=None,
        metavar="N",
        help="no-op tasks per system in the memory pass (default 5000, --quick 500)",
    )
    parser.add_argument(
        "--listing-sizes",
        type=_sizes,
        default=None,
        metavar="SMALL,LARGE",
        help="finished tasks kept for the listing pass (default 10000,100000; --quick 1000,10000)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("bench-results"), help="output folder (default bench-results/)"
    )
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.memory_tasks is not None and args.memory_tasks < 1:
        parser.error("--memory-tasks must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    plan = make_plan(
        quick=args.quick,
        workloads=args.workloads,
        systems=args.systems,
        workers=args.workers,
        repeat=args.repeat,
        worker_nice=args.worker_nice,
        passes=args.passes,
        memory_tasks=args.memory_tasks,
        listing_sizes=args.listing_sizes,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        results = runner.run(run(plan, args.out))
    paths = report.write_all(results, args.out)
    report.print_summary(results, console)
    console.print(f"\n[bold]Wrote[/] {', '.join(str(p) for p in paths)}  ({results['duration_s']:.0f} s)")
    failed = results["problems"]
    if failed:
        console.print("[red]Problems:[/] " + "; ".join(failed))
        sys.exit(1)


def _loop_factory() -> Any:
    """uvloop when installed (it comes with uvicorn[standard]): less of the load generator's own overhead."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _order(names: tuple[str, ...], rep: int) -> list[str]:
    """Rotate the systems each repetition (A B C D, B C D A, ...) so none always goes first."""
    shift = rep % len(names)
    return list(names[shift:] + names[:shift])


async def run(plan: Plan, out: Path) -> dict[str, Any]:
    started_wall, started = datetime.now(UTC), time.perf_counter()
    log_dir = out / "logs"
    plan.cpu_rounds = calibrate_rounds(plan.sizes.cpu_seconds)
    plan.warmup_cpu_rounds = calibrate_rounds(plan.warmup.cpu_seconds)
    redis_proc = None
    redis_url = os.environ.get("REDIS_URL")
    if redis_url:
        base, _, db = redis_url.rstrip("/").rpartition("/")
        base_db = int(db) if db.isdigit() else 0
        base = base if db.isdigit() else redis_url.rstrip("/")
    else:
        redis_proc = procs.start_redis(log_dir)
        base, base_db = redis_proc.url, 0
    stats_client = redis.Redis.from_url(f"{base}/{base_db}")
    redis_port = int(stats_client.connection_pool.connection_kwargs.get("port", 6379))
    running: dict[str, systems.Running] = {}
    probe = Probe(interval=0.02)
    problems: list[str] = []
    runs: list[dict[str, Any]] = []
    rate_runs: list[dict[str, Any]] = []
    counts: dict[str, Any] = {}
    costs: dict[str, Any] = {}
    n_steps = len(plan.systems) * (len(plan.workloads) * (plan.repeat + 1) + plan.repeat) + len(plan.systems)
    n_steps += passes.steps(plan)
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    try:
        with progress:
            step = progress.add_task("starting", total=n_steps)
            for name in plan.systems:
                running[name] = systems.start(
                    systems.SYSTEMS[name], base, base_db, plan.workers, log_dir, nice=plan.worker_nice
                )
            for system in running.values():
                procs.wait_http(system.api)
                progress.update(step, description=f"waiting for {system.spec.name}")
                await rates.finished_task(system)  # a first task end to end: its worker is ready too
                if system.worker:  # the hybrid runs no-ops in-process: a `cpu` task reaches its worker
                    await rates.finished_task(system, "cpu", {"rounds": 1_000})
            progress.console.log(f"every system ready after {time.perf_counter() - started:.0f} s")
            for rep in range(-1, plan.repeat):
                warmup = rep < 0
                label = "warm-up" if warmup else f"repetition {rep + 1}/{plan.repeat}"
                for workload_name in plan.workloads:
                    workload = plan.workload(workload_name, warmup=warmup)
                    for name in _order(plan.systems, max(rep, 0)):
                        progress.update(step, description=f"{label}: {workload_name} on {name}")
                        drive = plan.drive_for(warmup=warmup)
                        result = await driver.run_once(running[name], workload, drive, probe, stats_client)
                        if result["failed"]:
                            problems.append(
                                f"{name}/{workload_name}: {result['failed']} tasks failed {result['errors']}"
                            )
                        if not warmup:
                            runs.append({"system": name, "workload": workload_name, "rep": rep, **result})
                            progress.console.log(_one_line(name, workload_name, rep, result))
                        progress.advance(step)
                        await asyncio.sleep(0.2)
                if warmup:
                    progress.console.log(f"warm-up done after {time.perf_counter() - started:.0f} s")
                    continue
                for name in _order(plan.systems, rep):
                    progress.update(step, description=f"{label}: request rates on {name}")
                    measured = await rates.measure(
                        running[name],
                        gets=plan.rate_gets,
                        posts=plan.rate_posts,
                        connections=plan.rate_connections,
                        hello=name == "blog",
                    )
                    rate_runs.append({"system": name, "rep": rep, **measured})
                    progress.advance(step)
            for name in plan.systems:
                progress.update(step, description=f"counting Redis commands (MONITOR) on {name}")
                if running[name].redis_url:
                    counts[name] = await count.count(running[name], plan.count_tasks, stats_client, redis_port)
                progress.advance(step)
            context = passes.Context(
                plan,
                running,
                base,
                base_db,
                stats_client,
                redis_port,
                private_redis=redis_proc is not None,
                log_dir=log_dir,
                say=lambda text: progress.update(step, description=text),
                advance=lambda: progress.advance(step),
                log=progress.console.log,
                problems=problems,
            )
            costs = await passes.run(context)
            machine = environment.describe(running, redis_proc, stats_client)
    finally:
        probe.close()
        for system in running.values():
            system.stop()
        stats_client.close()
        if redis_proc:
            redis_proc.stop()
    duration = time.perf_counter() - started
    return report.assemble(plan, runs, rate_runs, counts, machine, started_wall, duration, problems, costs)


def _one_line(system: str, workload: str, rep: int, r: dict[str, Any]) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    return (
        f"rep {rep + 1} {workload:<9} {system:<10} thr {r['throughput_per_s'] or 0:7.1f}/s  "
        f"submit p50 {ms(r['submit']['p50_ms'])} ms  e2e p50 {ms(r['e2e_recorded']['p50_ms'])} ms  "
        f"probe p99 {ms(r['probe_run']['p99_ms'])} ms (idle {ms(r['probe_idle']['p99_ms'])})  "
        f"redis {r['redis']['commands_per_task']:.1f}/task"
    )


if __name__ == "__main__":
    main()
