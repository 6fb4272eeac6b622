"""Turn a run into `results.json`, `report.md`, PNG charts and a terminal summary."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import report_costs
from bench.plan import Plan
from bench.stats import ratio, spread
from bench.systems import SYSTEMS
from bench.targets import median as _median
from bench.targets import num, targets

# (key, label, unit, getter on one run's metrics)
Getter = Callable[[dict[str, Any]], float | None]
METRICS: list[tuple[str, str, str, Getter]] = [
    ("submit_p50_ms", "submit p50", "ms", lambda r: r["submit"]["p50_ms"]),
    ("submit_p95_ms", "submit p95", "ms", lambda r: r["submit"]["p95_ms"]),
    ("submit_p99_ms", "submit p99", "ms", lambda r: r["submit"]["p99_ms"]),
    ("e2e_recorded_p50_ms", "end-to-end p50 (recorded)", "ms", lambda r: r["e2e_recorded"]["p50_ms"]),
    ("e2e_recorded_p99_ms", "end-to-end p99 (recorded)", "ms", lambda r: r["e2e_recorded"]["p99_ms"]),
    ("e2e_seen_p50_ms", "end-to-end p50 (seen by poller)", "ms", lambda r: r["e2e_seen"]["p50_ms"]),
    ("e2e_seen_p99_ms", "end-to-end p99 (seen by poller)", "ms", lambda r: r["e2e_seen"]["p99_ms"]),
    ("throughput_per_s", "throughput", "tasks/s", lambda r: r["throughput_per_s"]),
    ("makespan_s", "makespan", "s", lambda r: r["makespan_s"]),
    ("submit_rate_per_s", "POST rate during the run", "req/s", lambda r: r["submit_rate_per_s"]),
    ("probe_idle_p50_ms", "probe p50 idle", "ms", lambda r: r["probe_idle"]["p50_ms"]),
    ("probe_idle_p99_ms", "probe p99 idle", "ms", lambda r: r["probe_idle"]["p99_ms"]),
    ("probe_run_p50_ms", "probe p50 during", "ms", lambda r: r["probe_run"]["p50_ms"]),
    ("probe_run_p99_ms", "probe p99 during", "ms", lambda r: r["probe_run"]["p99_ms"]),
    ("redis_commands_per_task", "Redis commands/task", "", lambda r: r["redis"]["commands_per_task"]),
    ("gets_per_task", "GETs/task by the client", "", lambda r: r["gets_per_task"]),
    ("api_cpu_s", "API CPU", "s", lambda r: r["api_cpu_s"]),
    ("api_cpu_per_task_ms", "API CPU/task", "ms", lambda r: r["api_cpu_per_task_ms"]),
    ("api_peak_rss_mb", "API peak RSS", "MB", lambda r: r["api_peak_rss_mb"]),
    ("worker_cpu_s", "worker CPU", "s", lambda r: r["worker_cpu_s"]),
    ("client_cpu_share", "load generator CPU / wall", "", lambda r: r["client_cpu_share"]),
    ("sleep_e2e_p50_ms", "sleep tasks: end-to-end p50 (recorded)", "ms", lambda r: _kind(r, "sleep")),
    ("cpu_e2e_p50_ms", "cpu tasks: end-to-end p50 (recorded)", "ms", lambda r: _kind(r, "cpu")),
]
# Figures only a workload of several task kinds (`mixed`) has.
KIND_METRICS = ("sleep_e2e_p50_ms", "cpu_e2e_p50_ms")


def _kind(run: dict[str, Any], kind: str) -> float | None:
    value: float | None = run.get("by_kind", {}).get(kind, {}).get("e2e_recorded", {}).get("p50_ms")
    return value


RATE_KINDS = [("post", "POST /tasks/noop"), ("get_task", "GET /tasks/{id}"), ("hello", "GET /hello (async hello)")]


def assemble(
    plan: Plan,
    runs: list[dict[str, Any]],
    rate_runs: list[dict[str, Any]],
    counts: dict[str, Any],
    machine: dict[str, Any],
    started: datetime,
    duration: float,
    problems: list[str],
    costs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything `results.json` holds; `costs` are the passes after the workloads (memory, listing, events)."""
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for workload in plan.workloads:
        summary[workload] = {}
        for system in plan.systems:
            mine = [r for r in runs if r["workload"] == workload and r["system"] == system]
            summary[workload][system] = {key: spread([get(r) for r in mine]) for key, _, _, get in METRICS}
    rate_summary: dict[str, dict[str, Any]] = {}
    for system in plan.systems:
        mine = [r for r in rate_runs if r["system"] == system]
        rate_summary[system] = {
            kind: spread([r[kind]["rate_per_s"] for r in mine if kind in r]) for kind, _ in RATE_KINDS
        } | {
            "post_completed_per_s": spread([r["post"]["completed_per_s"] for r in mine]),
            "post_redis_cpu_us": spread([r["post"].get("redis_cpu_us_per_task") for r in mine]),
            "post_worker_cpu_us": spread([r["post"].get("worker_cpu_us_per_task") for r in mine]),
            **{
                f"{kind}_api_cpu_us": spread([r[kind]["api_cpu_us_per_request"] for r in mine if kind in r])
                for kind, _ in RATE_KINDS
            },
        }
    results: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"),
        "duration_s": duration,
        "quick": plan.quick,
        "machine": machine,
        "settings": {
            "systems": {name: SYSTEMS[name].notes for name in plan.systems},
            "workloads": {name: plan.workload(name).description for name in plan.workloads},
            "workers": plan.workers,
            "workers_reason": plan.workers_reason,
            "worker_nice": plan.worker_nice,
            "repeat": plan.repeat,
            "warmup": "one discarded round of every system × workload at small sizes",
            "order": "interleaved: every repetition runs each workload on every system, the order rotated",
            "drive": asdict(plan.drive),
            "cpu_rounds": plan.cpu_rounds,
            "rates": {"gets": plan.rate_gets, "posts": plan.rate_posts, "connections": plan.rate_connections},
            "count_tasks": plan.count_tasks,
            "probe_interval_s": 0.02,
            "passes": list(plan.passes),
            "memory_tasks": plan.memory_tasks,
            "listing": asdict(plan.listing),
        },
        "summary": summary,
        "rate_summary": rate_summary,
        "redis_count": counts,
        **(costs or {}),
        "runs": runs,
        "rates": rate_runs,
        "problems": problems,
    }
    results["targets"] = targets(results)
    return results


# ---------------------------------------------------------------- formatting


def _cell(node: dict[str, Any] | None) -> str:
    if not node or node.get("median") is None:
        return "–"
    if node["n"] > 1 and node["min"] != node["max"]:
        return f"{num(node['median'])} ({num(node['min'])}–{num(node['max'])})"
    return num(node["median"])


def _x(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _measured(target: dict[str, Any]) -> str:
    """A target's figure with its unit: a byte count, milliseconds, or (no unit) a ratio or a count."""
    unit = str(target.get("unit", ""))
    if unit == "B":
        return f"{num(target['measured'], 0)} B"
    if unit == "ms":
        return f"{num(target['measured'])} ms"
    return num(target["measured"], 2) + unit


def markdown(results: dict[str, Any], charts: list[Path]) -> str:
    m, st = results["machine"], results["settings"]
    s, rates, counts = results["summary"], results["rate_summary"], results["redis_count"]
    systems = list(st["systems"])
    workloads = list(st["workloads"])
    reps = st["repeat"]
    lines: list[str] = []
    add = lines.append
    kind = "quick smoke run (--quick): small sizes, one repetition" if results["quick"] else "full run"
    add("# Benchmark: BackgroundTasks vs Celery, ours vs the apps people write today\n")
    add(
        f"Run on **{results['started_at'][:10]}** ({results['started_at']}), {kind}, on **{m['cores']} cores** "
        f"({m['cpu_model']}), {m['memory_gb']} GB, {m['platform']}; Python {m['python']}, redis-server "
        f"{m['redis_server']}. The whole run took **{results['duration_s']:.0f} s**.\n"
    )
    add(
        "> Other processes may share the machine while it runs, and the load "
        f"generator, the probe, Redis, the API and the workers all share the same {m['cores']} cores: read the "
        "**ratios** between systems measured in the same run, not the absolute numbers. Each figure is the "
        f"median of {reps} interleaved repetition(s), with the min–max over repetitions in brackets.\n"
    )
    add("## Systems\n")
    add("| system | what it is |\n|---|---|")
    for name in systems:
        add(f"| `{name}` | {st['systems'][name]} |")
    add("")
    add(
        f"Same Redis (one server, a database each), the same HTTP client and uvicorn flags (`{m['uvicorn_flags']}`) "
        f"for every API, the same Celery worker flags (`{m['celery_worker_flags']}`) and pool size "
        f"(**{st['workers']}**: {st['workers_reason']}) for every system's Celery worker"
        + (f", both started with `nice -n {st['worker_nice']}`" if st["worker_nice"] else ", at the API's priority")
        + ".\n"
    )

    add("## Headline: what CPU-bound tasks do to the API\n")
    add(
        "`GET /health` latency from a separate probe process, every 20 ms, idle (just before each run) and "
        "while the workload runs. `cpu` is a `def` task (a thread of the API under `background`/blog-style), "
        "`cpu_async` the same work as an `async def` task (it holds the event loop).\n"
    )
    head = [w for w in ("noop", "sleep", "cpu", "cpu_async", "mixed") if w in workloads]
    add("| system | idle p99 | " + " | ".join(f"during {w} p99 (× idle)" for w in head) + " |")
    add("|---|---:|" + "---:|" * len(head))
    for name in systems:
        idle = _median(s, head[0], name, "probe_idle_p99_ms") if head else None
        cells = []
        for w in head:
            run = _median(s, w, name, "probe_run_p99_ms")
            cells.append(f"{num(run)} ms ({_x(ratio(run, _median(s, w, name, 'probe_idle_p99_ms')))})")
        add(f"| `{name}` | {num(idle)} ms | " + " | ".join(cells) + " |")
    add("")

    add("## Targets\n")
    add("Measured by this run, not asserted by any test.\n")
    add("| target | measured | met | note |\n|---|---:|:---:|---|")
    for t in results["targets"]:
        met = "yes" if t["met"] else "**no**"
        add(f"| {t['target']} | {_measured(t)} | {met} | {t['note']} |")
    add("")

    add("## Ratios against the baselines\n")
    add("| | ours / baseline |\n|---|---:|")
    for ours, base in (("background", "blog"), ("celery", "template")):
        if ours not in systems or base not in systems:
            continue
        post = ratio(_median(rates, ours, "post"), _median(rates, base, "post"))
        add(f"| `{ours}` / `{base}`: POST rate | {_x(post)} |")
        for w in workloads:
            for key, label in (
                ("throughput_per_s", "throughput"),
                ("submit_p50_ms", "submit p50"),
                ("e2e_recorded_p50_ms", "end-to-end p50"),
                ("api_cpu_per_task_ms", "API CPU per task"),
            ):
                value = ratio(_median(s, w, ours, key), _median(s, w, base, key))
                add(f"| `{ours}` / `{base}`: {w} {label} | {_x(value)} |")
    add("")

    lines.extend(report_costs.mixed_section(results))

    add("## Workloads\n")
    d = st["drive"]
    add(
        f"Each run submits the tasks with {d['concurrency']} POSTs in flight; {d['tracked']} tasks spread over the run "
        "are each followed by a client polling at the workload's interval (25 ms for `noop`, 50 ms for `sleep` and "
        f'`mixed`, 100 ms for `cpu` and `cpu_async`: "seen by poller"), the rest are read by {d["lanes"]} sweep '
        'lanes in submission order (one GET per task when tasks end in order). End-to-end "recorded" is the finish '
        "time the system stored minus the client's send time; throughput is tasks / makespan (first POST sent → last "
        "recorded finish). Redis commands per task are the `INFO commandstats` delta over the run (everything the "
        "system did, including the client's polling reads and the calls inside Lua scripts, less PINGs and the "
        "idle rate of the other systems' workers), see the MONITOR pass below for the exact split.\n"
    )
    for w in workloads:
        add(f"### `{w}`: {st['workloads'][w]}\n")
        add("| metric | " + " | ".join(f"`{n}`" for n in systems) + " |")
        add("|---|" + "---:|" * len(systems))
        for key, label, unit, _ in METRICS:
            row = [_cell(s[w][n].get(key)) for n in systems]
            if all(cell == "–" for cell in row):
                continue
            add(f"| {label}{f' ({unit})' if unit else ''} | " + " | ".join(row) + " |")
        add("")

    add("## Request rates\n")
    r = st["rates"]
    add(
        f"{r['gets']} GETs and {r['posts']} POSTs per system and repetition over {r['connections']} keep-alive "
        "connections, from a minimal asyncio HTTP/1.1 client (httpx's own cost per request would make the client, "
        'not the server, the limit on 2 cores). "completed" counts the POSTed no-ops until the last one ran.\n'
    )
    add("| system | POST /tasks/noop (req/s) | completed (tasks/s) | GET /tasks/{id} (req/s) | GET /hello (req/s) |")
    add("|---|---:|---:|---:|---:|")
    for name in systems:
        rs = rates[name]
        add(
            f"| `{name}` | {_cell(rs['post'])} | {_cell(rs['post_completed_per_s'])} | {_cell(rs['get_task'])} "
            f"| {_cell(rs['hello'])} |"
        )
    add("")
    add(
        "API CPU per request (µs, the API process's user+system time / requests; less sensitive to whatever else "
        "runs on the machine than a rate is; a background POST includes running its no-op in the API process):\n"
    )
    add("| system | POST /tasks/noop | GET /tasks/{id} | GET /hello |\n|---|---:|---:|---:|")
    for name in systems:
        rs = rates[name]
        cells = [_cell(rs[f"{kind}_api_cpu_us"]) for kind in ("post", "get_task", "hello")]
        add(f"| `{name}` | " + " | ".join(cells) + " |")
    add("")
    add(
        "CPU per no-op task under that saturating POST load, from submission to its end (µs: the API process, the "
        "Celery worker processes, and the Redis server's `INFO cpu`; what the at-scale arithmetic in the README "
        "divides a core by):\n"
    )
    add("| system | API | workers | Redis |\n|---|---:|---:|---:|")
    for name in systems:
        rs = rates[name]
        cells = [_cell(rs.get(key, {})) for key in ("post_api_cpu_us", "post_worker_cpu_us", "post_redis_cpu_us")]
        add(f"| `{name}` | " + " | ".join(cells) + " |")
    add("")

    costs = report_costs.memory_section(results) + report_costs.listing_section(results)
    if costs:
        add("## Cost per task\n")
        lines.extend(costs)

    if counts:
        add("## Redis commands per task (MONITOR pass)\n")
        first = next(iter(counts.values()))
        add(
            f"A separate, untimed pass of {first['tasks']} no-op tasks per system with MONITOR on, each task then read "
            "until it ended. `INFO commandstats` counts every command Redis executes, **including each call a Lua "
            "script makes** (and the EVALSHA that ran it); MONITOR shows those as `lua`, so they are counted "
            "separately here. *Top-level* commands are what the API and the workers send; each of ours is one "
            "round trip (submit, start, each progress write and finish are one script each). Polling reads "
            "(`GET /tasks/{id}`), health PINGs and a new connection's handshake (HELLO, SELECT, CLIENT) are not in "
            "the per-task totals; reads per GET are shown on their own.\n"
        )
        events = results.get("redis_count_events") or {}
        lines.extend(report_costs.events_intro(results))
        columns = [(f"`{n}`", c) for n, c in counts.items()] + [(f"`{n}` events on", c) for n, c in events.items()]
        add("| per task | " + " | ".join(label for label, _ in columns) + " |")
        add("|---|" + "---:|" * len(columns))
        rows = [
            ("status layer (`bgt:*`; `blog:*`), top-level", "status_top_level"),
            ("status layer, inside Lua scripts", "status_in_scripts"),
            ("result backend (`celery-task-meta-*`)", "results"),
            ("task events (`celeryev` publishes)", "events"),
            ("transport (Celery broker)", "transport_top_level"),
            ("**total top-level**", "top_level"),
            ("**total incl. script calls** (= commandstats)", "total"),
        ]
        for label, key in rows:
            add(f"| {label} | " + " | ".join(num(c["per_task"].get(key), 2) for _, c in columns) + " |")
        add(
            "| Redis reads per `GET /tasks/{id}` | " + " | ".join(num(c["reads_per_get"], 2) for _, c in columns) + " |"
        )
        add(
            "| check: commandstats delta incl. reads, per task | "
            + " | ".join(num(c["commandstats_per_task"], 2) for _, c in columns)
            + " |"
        )
        add("")
        for name, c in [*counts.items(), *((f"{n} (events on)", c) for n, c in events.items())]:
            add(f"<details><summary><code>{name}</code>: every command, per task</summary>\n")
            add("| who | purpose | command | per task |\n|---|---|---|---:|")
            for what, per in c["by_command_per_task"].items():
                who, cat, cmd = what.split(" ")
                add(f"| {who} | {cat} | {cmd} | {num(per, 2)} |")
            add("\n</details>\n")

    if charts:
        add("## Charts\n")
        for chart in charts:
            add(f"![{chart.stem}]({chart.name})\n")

    add("## How it was measured\n")
    add(
        f"- Warm-up: {st['warmup']}; then {reps} repetition(s), {st['order']}.\n"
        f"- CPU work: {st['cpu_rounds']:,} sha256 rounds per task, calibrated at the start of the run.\n"
        "- Probe: a separate process with its own keep-alive connection, `GET /health` every 20 ms; our `/health` "
        "also PINGs Redis, the baselines' do not.\n"
        "- API CPU is the API process's user+system time over the run; peak RSS is sampled every 50 ms; worker "
        "CPU is the whole Celery worker process tree.\n"
        f"- Versions: {', '.join(f'{k} {v}' for k, v in m['versions'].items() if v)}.\n"
        f"- Load average at the end of the run: {', '.join(f'{x:.2f}' for x in m['load_average_at_end'])}.\n"
    )
    if results.get("pass_seconds"):
        took = ", ".join(f"{name} {sec:.0f} s" for name, sec in results["pass_seconds"].items())
        add(f"- The cost passes after the workloads took: {took}.\n")
    if results["problems"]:
        add("## Problems\n")
        for problem in results["problems"]:
            add(f"- {problem}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- charts

COLORS = {
    "background": "#1f77b4",
    "celery": "#2ca02c",
    "hybrid": "#9467bd",
    "blog": "#aec7e8",
    "blog-redis": "#c5b0d5",
    "template": "#98df8a",
}


def charts(results: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, st = results["summary"], results["settings"]
    systems, workloads = list(st["systems"]), list(st["workloads"])
    paths: list[Path] = []

    def bars(ax: Any, key: str, w: str, *, log: bool = False) -> None:
        meds = [_median(s, w, n, key) or 0 for n in systems]
        lows = [max(0.0, m - (s[w][n][key]["min"] or m)) for m, n in zip(meds, systems, strict=True)]
        highs = [max(0.0, (s[w][n][key]["max"] or m) - m) for m, n in zip(meds, systems, strict=True)]
        ax.bar(systems, meds, color=[COLORS[n] for n in systems], yerr=[lows, highs], capsize=3)
        if log:
            ax.set_yscale("log")
        ax.set_title(w, fontsize=10)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        path = out / name
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)

    fig, axes = plt.subplots(1, len(workloads), figsize=(3 * len(workloads), 3), squeeze=False)
    for ax, w in zip(axes[0], workloads, strict=True):
        bars(ax, "throughput_per_s", w)
    axes[0][0].set_ylabel("tasks/s (median, min–max)")
    fig.suptitle("Throughput by system", fontsize=11)
    save(fig, "throughput.png")

    fig, axes = plt.subplots(1, len(workloads), figsize=(3 * len(workloads), 3.2), squeeze=False)
    keys = [("submit_p50_ms", "submit p50"), ("e2e_recorded_p50_ms", "e2e p50"), ("e2e_recorded_p99_ms", "e2e p99")]
    for ax, w in zip(axes[0], workloads, strict=True):
        width = 0.8 / len(keys)
        for k, (key, label) in enumerate(keys):
            values = [max(_median(s, w, n, key) or 0, 0.01) for n in systems]
            ax.bar([i + k * width for i in range(len(systems))], values, width, label=label)
        ax.set_xticks([i + width for i in range(len(systems))], systems, rotation=30, fontsize=8)
        ax.set_yscale("log")
        ax.set_title(w, fontsize=10)
    axes[0][0].set_ylabel("ms (log)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Latency by system", fontsize=11)
    save(fig, "latency.png")

    fig, axes = plt.subplots(1, len(workloads), figsize=(3 * len(workloads), 3.2), squeeze=False)
    for ax, w in zip(axes[0], workloads, strict=True):
        idle = [max(_median(s, w, n, "probe_idle_p99_ms") or 0, 0.01) for n in systems]
        run = [max(_median(s, w, n, "probe_run_p99_ms") or 0, 0.01) for n in systems]
        xs = range(len(systems))
        ax.bar([x - 0.2 for x in xs], idle, 0.4, label="idle p99", color="#bbbbbb")
        ax.bar([x + 0.2 for x in xs], run, 0.4, label="during p99", color=[COLORS[n] for n in systems])
        ax.set_xticks(list(xs), systems, rotation=30, fontsize=8)
        ax.set_yscale("log")
        ax.set_title(w, fontsize=10)
    axes[0][0].set_ylabel("GET /health ms (log)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("API responsiveness: health probe p99, idle vs during the workload", fontsize=11)
    save(fig, "responsiveness.png")

    rates = results["rate_summary"]
    fig, ax = plt.subplots(figsize=(6, 3))
    xs = range(len(systems))
    ax.bar([x - 0.2 for x in xs], [_median(rates, n, "post") or 0 for n in systems], 0.4, label="POST /tasks/noop")
    ax.bar([x + 0.2 for x in xs], [_median(rates, n, "get_task") or 0 for n in systems], 0.4, label="GET /tasks/{id}")
    hello = _median(rates, "blog", "hello")
    if hello:
        ax.axhline(hello, color="grey", linestyle="--", label="async hello")
    ax.set_xticks(list(xs), systems)
    ax.set_ylabel("requests/s")
    ax.legend(fontsize=7)
    ax.set_title("Request rates", fontsize=11)
    save(fig, "rates.png")
    return paths


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    return value


def write_all(results: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    chart_paths = charts(results, out)
    json_path = out / "results.json"
    json_path.write_text(json.dumps(_rounded(results), indent=1, default=str) + "\n")
    md_path = out / "report.md"
    md_path.write_text(markdown(results, chart_paths))
    return [md_path, json_path, *chart_paths]


def print_summary(results: dict[str, Any], console: Console) -> None:
    s, st = results["summary"], results["settings"]
    systems = list(st["systems"])
    cols = [
        ("throughput_per_s", "thr/s"),
        ("submit_p50_ms", "submit p50"),
        ("submit_p99_ms", "submit p99"),
        ("e2e_recorded_p50_ms", "e2e p50"),
        ("e2e_recorded_p99_ms", "e2e p99"),
        ("e2e_seen_p50_ms", "seen p50"),
        ("probe_idle_p99_ms", "probe idle p99"),
        ("probe_run_p99_ms", "probe run p99"),
        ("redis_commands_per_task", "redis/task"),
        ("api_cpu_s", "API CPU s"),
        ("api_peak_rss_mb", "RSS MB"),
    ]
    for w in st["workloads"]:
        table = Table(title=f"{w}: {st['workloads'][w]} (median of {st['repeat']}; ms unless said)")
        table.add_column("system")
        for _, label in cols:
            table.add_column(label, justify="right")
        for n in systems:
            table.add_row(n, *(num(_median(s, w, n, key)) for key, _ in cols))
        console.print(table)
    rates = results["rate_summary"]
    table = Table(title="request rates (req/s)")
    for label in ("system", "POST noop", "GET /tasks/{id}", "GET /hello"):
        table.add_column(label, justify="right")
    for n in systems:
        table.add_row(
            n, num(_median(rates, n, "post")), num(_median(rates, n, "get_task")), num(_median(rates, n, "hello"))
        )
    console.print(table)
    report_costs.print_costs(results, console)
    table = Table(title="targets (measured, not asserted)")
    for label in ("target", "measured", "met"):
        table.add_column(label)
    for t in results["targets"]:
        table.add_row(t["target"], _measured(t), "yes" if t["met"] else "[red]no[/]")
    console.print(table)


def main() -> None:
    """`python -m bench.report DIR`: write report.md and the charts again from DIR/results.json."""
    import sys

    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m bench.report DIR  (a folder holding results.json)")
    out = Path(sys.argv[1])
    results = json.loads((out / "results.json").read_text())
    results["targets"] = targets(results)
    for path in write_all(results, out):
        print(path)


if __name__ == "__main__":
    main()
