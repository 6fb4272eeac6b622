"""The report's sections on cost per task (memory, listing, task events) and on the `mixed` workload.

Kept apart from `report.py` so each stays readable; every function reads only `results.json`'s shape and
returns nothing for a part the run did not measure (or an older results.json that lacks it).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.targets import median, num, thousands


def memory_section(results: dict[str, Any]) -> list[str]:
    memory = results.get("memory") or {}
    if not memory:
        return []
    lines = ["### Redis memory per retained finished task\n"]
    connections = next(iter(memory.values())).get("connections", 8)
    lines.append(
        "How measured: for one system at a time, every other one idle, on the benchmark's Redis: a warm-up batch "
        f"of no-op tasks (scripts loaded, connection pools grown), then `INFO memory` `used_memory` and the "
        f"system's database's `DBSIZE`, then N no-op tasks submitted over {connections} keep-alive connections, "
        "each task read back over HTTP until it had ended, then the same readings again. Per task = "
        "(after − before) / N, leaving out what client connections' buffers hold (`mem_clients_normal`, which "
        "swings by hundreds of KB between two readings; the raw delta is in the last column). `used_memory` is "
        "server-wide: the baseline is taken just before, so what other systems left behind cancels out. It "
        "counts everything a finished task leaves in Redis until it expires (ours: the record and whatever the "
        "status store keeps beside it, including a share of any capped stream that has not reached its cap yet; "
        "the template's: Celery's result). The blog-style app keeps nothing in Redis.\n"
    )
    lines.append(
        "Capped streams (found by type, `SCAN TYPE stream`) cost a share per task only until they reach their "
        "cap: the *retained* column leaves them out (what each of days of kept tasks costs), and their size "
        "at the end is shown on its own.\n"
    )
    lines.append(
        "| system | N | bytes per task (`used_memory` Δ / N, less clients) | retained bytes per task (less capped "
        "streams) | capped streams at the end | keys per task (`DBSIZE` Δ / N) | raw `used_memory` Δ / N |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    for name, m in memory.items():
        streams = m.get("stream_bytes_after")
        lines.append(
            f"| `{name}` | {m['tasks']:,} | {num(m['bytes_per_task'], 0)} "
            f"| {num(m.get('retained_bytes_per_task'), 0)} "
            f"| {'–' if streams is None else f'{streams / 2**20:.2f} MB'} | {num(m['keys_per_task'], 2)} "
            f"| {num(m.get('used_memory_bytes_per_task'), 0)} |"
        )
    lines.append("")
    return lines


_LISTING_LABELS = {
    "state": "`GET /tasks?state=failed&limit=50` (none failed)",
    "name": "`GET /tasks?name={named}&limit=50` ({n} such tasks)",
    "first_page": "`GET /tasks?limit=50` (the newest 50)",
}


def listing_section(results: dict[str, Any]) -> list[str]:
    listing = results.get("listing")
    if not listing:
        return []
    small, large = listing["small"], listing["large"]
    at = {size: listing["sizes"][str(size)]["endpoints"] for size in (small, large)}
    fill = listing["sizes"][str(large)]["fill"]
    lines = [f"### Listing with {thousands(small)} and {thousands(large)} finished tasks kept\n"]
    lines.append(
        f"How measured: a `background` API of its own, on a Redis database of its own (emptied before and after), "
        f"filled by the lean client with {thousands(small)} finished no-op tasks, {listing['named']} `sleep` tasks "
        f"of 0 s spread among them and no failed task; timed; then filled with "
        f"{thousands(large - small)} more no-ops (at {fill['rate_per_s']:,.0f} tasks/s) and timed again, so only "
        f"the number of kept tasks changes. Each request is timed alone, one after the other on one keep-alive "
        f"connection, after an untimed one: up to {listing['requests']} per request and size, fewer when they "
        f"took over {listing['budget_s']:g} s in all. *Flat* means the ratio of the p50s is near 1.\n"
    )
    lines.append(
        f"| request | p50 at {thousands(small)} (ms) | p95 | p50 at {thousands(large)} (ms) | p95 | "
        f"p50 {thousands(large)} / {thousands(small)} | requests timed | items answered |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for key, template in _LISTING_LABELS.items():
        a, b = at[small][key], at[large][key]
        label = template.format(named="sleep", n=listing["named"])
        ratio = listing["p50_ratio"][key]
        lines.append(
            f"| {label} | {num(a['p50_ms'])} | {num(a['p95_ms'])} | {num(b['p50_ms'])} | {num(b['p95_ms'])} | "
            f"{'–' if ratio is None else f'{ratio:.2f}×'} | {a['n']} / {b['n']} | {a['items']} / {b['items']} |"
        )
    lines.append("")
    return lines


def events_intro(results: dict[str, Any]) -> list[str]:
    events = results.get("redis_count_events") or {}
    if not events:
        return []
    how = "; ".join(f"`{name}`: {c['events_switch']}" for name, c in events.items())
    lines = [
        "The *events on* columns repeat the pass with Celery task events switched on, each system restarted "
        f"for it ({how}), the other columns have them off. Events are messages published to Celery's "
        "`celeryev` exchange (in Redis, a PUBLISH each), counted in their own row.\n"
    ]
    for name, c in events.items():
        if c["per_task"]["events"] == 0:
            lines.append(
                f"> `{name}` with events on published **no** task events: the service does not know the "
                f"setting yet (an unknown setting is ignored), so its *events on* column is the same as *off*.\n"
            )
    return lines


def ran_on(results: dict[str, Any], system: str, workload: str, kind: str) -> dict[str, int]:
    """Where the tasks of one kind ran over all repetitions (our record's `executor` field)."""
    total: Counter[str] = Counter()
    for run in results["runs"]:
        if run["system"] == system and run["workload"] == workload:
            total.update(run.get("by_kind", {}).get(kind, {}).get("ran_on", {}))
    return dict(total)


def mixed_section(results: dict[str, Any]) -> list[str]:
    s, st = results["summary"], results["settings"]
    if "mixed" not in s:
        return []
    systems = list(st["systems"])
    lines = ["## Mixed: I/O-bound and CPU-bound tasks together\n"]
    lines.append(
        f"`mixed`: {st['workloads']['mixed']}, submitted together. Each system runs them as it would: the "
        "blog-style app and `background` all in the API process, the template-style app and `celery` all on "
        "Celery, the `hybrid` by task (`TASK_EXECUTORS`). End-to-end p50 per task kind (recorded finish − "
        "send), and the health probe's p99 over the whole run.\n"
    )
    lines.append(
        "| system | sleep tasks e2e p50 (ms) | cpu tasks e2e p50 (ms) | health p99 during (idle) "
        "| where its cpu tasks ran (all repetitions) |"
    )
    lines.append("|---|---:|---:|---:|---|")
    for name in systems:
        where = ran_on(results, name, "mixed", "cpu")
        where_text = ", ".join(f"{k} {v}" for k, v in where.items() if k != "unknown") or "–"
        lines.append(
            f"| `{name}` | {num(median(s, 'mixed', name, 'sleep_e2e_p50_ms'))} "
            f"| {num(median(s, 'mixed', name, 'cpu_e2e_p50_ms'))} "
            f"| {num(median(s, 'mixed', name, 'probe_run_p99_ms'))} ms "
            f"({num(median(s, 'mixed', name, 'probe_idle_p99_ms'))} ms) | {where_text} |"
        )
    lines.append("")
    hybrid_cpu = ran_on(results, "hybrid", "mixed", "cpu")
    if hybrid_cpu and "celery" not in hybrid_cpu:
        lines.append(
            "> The `hybrid` ran its `cpu` tasks in the API process: the service does not route by "
            "`TASK_EXECUTORS` yet (an unknown setting is ignored), so it is the `background` system with an idle "
            "worker beside it.\n"
        )
    return lines


def print_costs(results: dict[str, Any], console: Console) -> None:
    memory = results.get("memory") or {}
    if memory:
        table = Table(title="Redis memory per retained finished no-op task")
        for label in ("system", "tasks", "bytes/task", "keys/task"):
            table.add_column(label, justify="right")
        for name, m in memory.items():
            table.add_row(name, f"{m['tasks']:,}", num(m["bytes_per_task"], 0), num(m["keys_per_task"], 2))
        console.print(table)
    listing = results.get("listing")
    if listing:
        small, large = listing["small"], listing["large"]
        table = Table(title=f"GET /tasks latency (ms) with {thousands(small)} / {thousands(large)} kept")
        for label in ("query", f"p50 {thousands(small)}", f"p50 {thousands(large)}", "ratio", "p95 large"):
            table.add_column(label, justify="right")
        for key, query in listing["queries"].items():
            a, b = (listing["sizes"][str(size)]["endpoints"][key] for size in (small, large))
            table.add_row(query, num(a["p50_ms"]), num(b["p50_ms"]), num(listing["p50_ratio"][key]), num(b["p95_ms"]))
        console.print(table)
    events = results.get("redis_count_events") or {}
    if events:
        table = Table(title="Redis commands per no-op task (MONITOR pass), task events off vs on")
        for label in ("system", "off", "on", "of which events"):
            table.add_column(label, justify="right")
        for name, c in events.items():
            off = results["redis_count"].get(name, {}).get("per_task", {}).get("total")
            table.add_row(name, num(off), num(c["per_task"]["total"]), num(c["per_task"]["events"]))
        console.print(table)
