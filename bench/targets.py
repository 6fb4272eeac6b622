"""The issues' targets, evaluated on one run's results (reported in the targets table, never asserted).

Everything is read from `results.json`'s shape, so `python -m bench.report DIR` re-evaluates them; a
figure the run did not measure (a system, workload or pass left out, an older results.json) drops its row.
"""

from __future__ import annotations

from typing import Any

from bench.stats import ratio


def median(summary: dict[str, Any], *path: str) -> float | None:
    """The median at `path` of a summary of spreads, or None wherever the path is missing."""
    node: Any = summary
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node.get("median") if isinstance(node, dict) else None


def thousands(n: int) -> str:
    """100000 -> "100k", as the targets name the listing sizes."""
    return f"{n // 1000:,}k" if n >= 1000 and n % 1000 == 0 else f"{n:,}"


def num(value: float | None, digits: int | None = None) -> str:
    """A figure for a report cell: thousands separated, fewer decimals as it grows, a dash when missing."""
    if value is None:
        return "–"
    if digits is None:
        digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:,.{digits}f}"


class _Targets:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(
        self, target: str, value: float | None, goal: float, *, at_most: bool = False, note: str = "", unit: str = ""
    ) -> None:
        met = None if value is None else (value <= goal if at_most else value >= goal)
        self.rows.append(
            {"target": target, "measured": value, "goal": goal, "at_most": at_most, "met": met, "note": note}
            | ({"unit": unit} if unit else {})
        )


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = _Targets()
    _in_process(results, out)
    _reads(results, out)
    _celery(results, out)
    _memory(results, out)
    _listing(results, out)
    _mixed(results, out)
    _responsiveness(results, out)
    return [t for t in out.rows if t["measured"] is not None]


def _in_process(results: dict[str, Any], out: _Targets) -> None:
    rates = results["rate_summary"]
    blog = median(rates, "blog", "post")
    floor = ratio(median(rates, "blog-redis", "post"), blog)  # the same app with its status in Redis
    out.add(
        "background: no-op POST rate ≥ 0.5 × blog-style",
        ratio(median(rates, "background", "post"), blog),
        0.5,
        note="" if floor is None else f"blog-style with its status in Redis: {floor:.2f} ×",
    )
    ours, blogs = median(rates, "background", "post_api_cpu_us"), median(rates, "blog", "post_api_cpu_us")
    out.add(
        "background: API CPU per POST /tasks/noop ≤ 2.5 × blog-style's",
        ratio(ours, blogs),
        2.5,
        at_most=True,
        note=""
        if ours is None or blogs is None
        else f"{ours:,.0f} vs {blogs:,.0f} µs (incl. running the no-op)" + _floor_cpu(rates),
    )


def _floor_cpu(rates: dict[str, Any]) -> str:
    floor = median(rates, "blog-redis", "post_api_cpu_us")
    return "" if floor is None else f"; blog-style with its status in Redis: {floor:,.0f} µs"


def _reads(results: dict[str, Any], out: _Targets) -> None:
    rates, counts = results["rate_summary"], results["redis_count"]
    hello = median(rates, "blog", "hello")
    floor = ratio(median(rates, "blog-redis", "get_task"), hello)  # one plain GET of a JSON string
    for name in ("background", "celery"):
        out.add(
            f"{name}: GET /tasks/{{id}} rate ≥ 0.5 × async hello",
            ratio(median(rates, name, "get_task"), hello),
            0.5,
            note="" if floor is None else f"blog-style with its status in Redis: {floor:.2f} ×",
        )
        if name in counts:
            out.add(
                f"{name}: GET /tasks/{{id}} = exactly one Redis command",
                counts[name]["reads_per_get"],
                1.0,
                at_most=True,
            )


def _celery(results: dict[str, Any], out: _Targets) -> None:
    s, rates, counts = results["summary"], results["rate_summary"], results["redis_count"]
    if "celery" in counts and "template" in counts:
        ours, theirs = counts["celery"]["per_task"], counts["template"]["per_task"]
        out.add(
            "celery: Redis commands per task counting the calls inside scripts (MONITOR pass total) "
            "≤ 1.2 × template-style",
            ratio(ours["total"], theirs["total"]),
            1.2,
            at_most=True,
            note=f"{ours['total']:.1f} vs {theirs['total']:.1f} incl. script calls; "
            f"top-level {ours['top_level']:.1f} vs {theirs['top_level']:.1f}",
        )
    saturated = ratio(
        median(rates, "celery", "post_completed_per_s"), median(rates, "template", "post_completed_per_s")
    )
    out.add(
        "celery: no-op end-to-end throughput ≥ 1.0 × template-style",
        ratio(median(s, "noop", "celery", "throughput_per_s"), median(s, "noop", "template", "throughput_per_s")),
        1.0,
        note="the `noop` workload (httpx driver); saturated by the lean client (request rates, completed/s): "
        + ("–" if saturated is None else f"{saturated:.2f}"),
    )
    out.add(
        "celery: POST rate ≥ 2 × template-style",
        ratio(median(rates, "celery", "post"), median(rates, "template", "post")),
        2.0,
    )
    for name in ("background", "celery"):
        if name in counts:
            per = counts[name]["per_task"]
            out.add(
                f"{name}: status-layer Redis commands per task ≤ 6 (top-level)",
                per["status_top_level"],
                6,
                at_most=True,
                note=f"{per['status']:.1f} counting the calls inside Lua scripts (INFO commandstats counts those)",
            )


def _memory(results: dict[str, Any], out: _Targets) -> None:
    memory = results.get("memory") or {}
    template = memory.get("template")
    beside = (
        f"template-style: {template['bytes_per_task']:,.0f} B, {template['keys_per_task']:.2f} keys per task"
        if template
        else ""
    )
    for name in ("background", "celery"):
        if name in memory:
            m = memory[name]
            retained = m.get("retained_bytes_per_task", m["bytes_per_task"])
            feed = (
                f"{m['bytes_per_task']:,.0f} B with the share of the capped event feed, which stops growing at its "
                f"cap ({m['stream_bytes_after'] / 2**20:.1f} MB here)"
                if "stream_bytes_after" in m
                else ""
            )
            out.add(
                f"{name}: Redis memory per retained finished no-op task ≤ 1 KB",
                retained,
                1024,
                at_most=True,
                note="; ".join(filter(None, [f"{m['keys_per_task']:.2f} keys per task", feed, beside])),
                unit="B",
            )


def _listing(results: dict[str, Any], out: _Targets) -> None:
    listing = results.get("listing")
    if not listing:
        return
    small, large = listing["small"], listing["large"]
    at_large = listing["sizes"][str(large)]["endpoints"]
    for key, query in (("state", "state=failed"), ("name", "name=…")):
        out.add(
            f"background: GET /tasks?{query} p50 ≤ 20 ms with {thousands(large)} kept",
            at_large[key]["p50_ms"],
            20,
            at_most=True,
            note=f"p95 {at_large[key]['p95_ms']:,.1f} ms over {at_large[key]['n']} requests",
            unit="ms",
        )
        out.add(
            f"background: GET /tasks?{query} flat from {thousands(small)} to {thousands(large)} kept "
            f"(p50 at {thousands(large)} / p50 at {thousands(small)} ≤ 1.5)",
            listing["p50_ratio"][key],
            1.5,
            at_most=True,
            unit="×",
        )


def _mixed(results: dict[str, Any], out: _Targets) -> None:
    s = results["summary"]
    hybrid, celery = median(s, "mixed", "hybrid", "probe_run_p99_ms"), median(s, "mixed", "celery", "probe_run_p99_ms")
    out.add(
        "mixed: hybrid's API health p99 ≤ 1.5 × the all-Celery system's (`celery`)",
        ratio(hybrid, celery),
        1.5,
        at_most=True,
        note="" if hybrid is None or celery is None else f"{hybrid:,.1f} vs {celery:,.1f} ms",
    )
    hybrid, background = (
        median(s, "mixed", "hybrid", "sleep_e2e_p50_ms"),
        median(s, "mixed", "background", "sleep_e2e_p50_ms"),
    )
    out.add(
        "mixed: hybrid's sleep-task end-to-end p50 ≤ 1.2 × the all-in-process system's (`background`)",
        ratio(hybrid, background),
        1.2,
        at_most=True,
        note="" if hybrid is None or background is None else f"{hybrid:,.0f} vs {background:,.0f} ms",
    )


def _responsiveness(results: dict[str, Any], out: _Targets) -> None:
    s = results["summary"]
    for workload in ("cpu", "cpu_async"):
        out.add(
            f"celery: health p99 during {workload} ≤ 2 × idle p99",
            ratio(
                median(s, workload, "celery", "probe_run_p99_ms"), median(s, workload, "celery", "probe_idle_p99_ms")
            ),
            2.0,
            at_most=True,
        )
