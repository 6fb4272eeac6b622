"""`python -m bench --quick` runs end to end and reports every system and every metric, with sane values.

No timing thresholds: the machine may be busy. The checks are about presence, counts and consistency.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.passes import EVENTS_SYSTEMS, MEMORY_SYSTEMS
from bench.plan import WORKLOADS
from bench.report import KIND_METRICS, METRICS
from bench.systems import SYSTEMS
from tests.processes import ROOT, clean_environ

pytestmark = pytest.mark.slow

ALWAYS = [key for key, *_ in METRICS if key != "worker_cpu_s" and key not in KIND_METRICS]
LATENCIES = [key for key in ALWAYS if key.endswith("_ms")]
OURS = [name for name, spec in SYSTEMS.items() if spec.executor is not None]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, json.loads((out / "results.json").read_text()), proc.stdout + proc.stderr


@pytest.mark.timeout(480)
def test_every_system_and_workload_has_every_metric(quick_run: tuple[Path, dict[str, Any], str]) -> None:
    _, results, _ = quick_run
    assert results["problems"] == []
    assert set(results["summary"]) == set(WORKLOADS)
    for workload in WORKLOADS:
        assert set(results["summary"][workload]) == set(SYSTEMS)
        for system, metrics in results["summary"][workload].items():
            for key in ALWAYS:
                value = metrics[key]["median"]
                assert value is not None, (workload, system, key)
                assert math.isfinite(value), (workload, system, key, value)
                assert value >= 0, (workload, system, key, value)
            for key in ("throughput_per_s", "makespan_s", "submit_p50_ms", "e2e_recorded_p50_ms", "probe_run_p50_ms"):
                assert metrics[key]["median"] > 0, (workload, system, key)
            assert (metrics["worker_cpu_s"]["median"] is not None) == (SYSTEMS[system].worker_app is not None)
            assert metrics["api_peak_rss_mb"]["median"] > 10
            for a, b in (("submit_p50_ms", "submit_p99_ms"), ("e2e_recorded_p50_ms", "e2e_recorded_p99_ms")):
                assert metrics[a]["median"] <= metrics[b]["median"]
            for key in KIND_METRICS:  # per task kind: only a workload of several kinds has them
                assert (metrics[key]["median"] is not None) == (workload == "mixed"), (workload, system, key)
                assert metrics[key]["median"] is None or metrics[key]["median"] > 0


@pytest.mark.timeout(480)
def test_mixed_workload_runs_both_kinds_and_says_where(quick_run: tuple[Path, dict[str, Any], str]) -> None:
    _, results, _ = quick_run
    for run in results["runs"]:
        if run["workload"] != "mixed":
            assert "by_kind" not in run
            continue
        kinds = run["by_kind"]
        assert set(kinds) == {"sleep", "cpu"}, run["system"]
        assert sum(kind["e2e_recorded"]["n"] for kind in kinds.values()) == run["tasks"]
        assert kinds["sleep"]["e2e_recorded"]["n"] > kinds["cpu"]["e2e_recorded"]["n"] > 0
        where = {name for kind in kinds.values() for name in kind["ran_on"]}
        if run["system"] in ("background", "celery"):  # our record says which executor ran each task
            assert where == {run["system"]}, run
        elif run["system"] == "hybrid":  # sleep in-process; cpu on Celery once TASK_EXECUTORS routes it
            assert set(kinds["sleep"]["ran_on"]) == {"background"}
            assert set(kinds["cpu"]["ran_on"]) <= {"background", "celery"}
        else:
            assert where == {"unknown"}  # the baselines do not say


@pytest.mark.timeout(480)
def test_every_task_ran_and_was_seen(quick_run: tuple[Path, dict[str, Any], str]) -> None:
    _, results, _ = quick_run
    assert {(r["system"], r["workload"]) for r in results["runs"]} == {(s, w) for s in SYSTEMS for w in WORKLOADS}
    for run in results["runs"]:
        where = (run["system"], run["workload"], run["errors"])
        assert run["failed"] == 0, where
        assert run["succeeded"] == run["tasks"], where
        assert run["e2e_recorded"]["n"] == run["tasks"], where  # every system recorded when each task ended
        assert 0 < run["e2e_seen"]["n"] <= run["tasks"], where
        assert run["probe_run"]["n"] > 0, where
        assert run["probe_idle"]["n"] > 0, where
        assert run["probe_run"]["errors"] == 0, where
        # a task cannot end before it was submitted, nor be seen before it ended
        assert run["e2e_recorded"]["p50_ms"] > 0
        if SYSTEMS[run["system"]].redis_db_offset is not None:
            assert run["redis"]["commands_per_task"] > 1, where
        elif run["workload"] == "noop":  # only other systems' idle workers touch Redis meanwhile: noise per task
            assert run["redis"]["commands_per_task"] < 1, (where, run["redis"])


@pytest.mark.timeout(480)
def test_request_rates_and_redis_counts(quick_run: tuple[Path, dict[str, Any], str]) -> None:
    _, results, _ = quick_run
    for system in SYSTEMS:
        rates = results["rate_summary"][system]
        assert rates["post"]["median"] > 0
        assert rates["get_task"]["median"] > 0
        assert rates["post_api_cpu_us"]["median"] > 0
    assert results["rate_summary"]["blog"]["hello"]["median"] > 0
    counts = results["redis_count"]
    assert set(counts) == {name for name, spec in SYSTEMS.items() if spec.redis_db_offset is not None}
    for name in OURS:
        per = counts[name]["per_task"]
        assert counts[name]["reads_per_get"] == 1.0  # GET /tasks/{id} is one GET
        assert per["status_top_level"] >= 2  # create, then a short task's start and end: one script each
        assert per["results"] == 0
        assert per["total"] == pytest.approx(per["top_level"] + per["in_scripts"])
    assert counts["background"]["per_task"]["transport"] == 0
    floor = counts["blog-redis"]  # the hand-written Redis baseline is what it says: a SET per change, a GET per poll
    assert floor["per_task"]["status_top_level"] == pytest.approx(3, abs=0.01)
    assert (floor["per_task"]["in_scripts"], floor["reads_per_get"]) == (0, 1.0)
    assert counts["celery"]["per_task"]["transport"] > 0
    assert counts["template"]["per_task"]["results"] > 0
    assert counts["template"]["per_task"]["status"] == 0
    events = results["redis_count_events"]
    assert set(events) == set(EVENTS_SYSTEMS)
    assert events["template"]["per_task"]["events"] > 0  # the worker's -E: task events are PUBLISHed
    assert "CELERY_TASK_EVENTS=true" in events["celery"]["events_switch"]
    for c in counts.values():
        assert c["per_task"]["events"] == 0  # events off
    for c in [*counts.values(), *events.values()]:  # the MONITOR attribution accounts for what commandstats counted
        lines = c["monitor_lines_per_task"] * c["tasks"]
        assert c["not_this_system"]["unattributed"] <= 0.01 * lines  # a connection gone before it was mapped
        assert c["monitor_lines_per_task"] == pytest.approx(c["commandstats_per_task"], rel=0.1)
        assert c["per_task"]["total"] == pytest.approx(c["per_task"]["top_level"] + c["per_task"]["in_scripts"])


@pytest.mark.timeout(480)
def test_memory_per_kept_task(quick_run: tuple[Path, dict[str, Any], str]) -> None:
    _, results, _ = quick_run
    memory = results["memory"]
    assert set(memory) == set(MEMORY_SYSTEMS)
    for name, m in memory.items():
        assert m["tasks"] == results["settings"]["memory_tasks"]
        assert 0 < m["bytes_per_task"] < 100_000, (name, m)  # clients' buffers left out: no longer noise-signed
        assert m["keys_per_task"] > 0, (name, m)
    assert memory["template"]["keys_per_task"] == pytest.approx(1.0, abs=0.02)  # one celery-task-meta-* each


@pytest.mark.timeout(480)
def test_listing_at_two_sizes(quick_run: tuple[Path, dict[str, Any], str]) -> None:
    _, results, _ = quick_run
    listing = results["listing"]
    assert (listing["small"], listing["large"]) == (1_000, 10_000)
    assert set(listing["sizes"]) == {"1000", "10000"}
    for size, measured in listing["sizes"].items():
        assert measured["fill"]["tasks"] > 0
        endpoints = measured["endpoints"]
        assert set(endpoints) == {"state", "name", "first_page"}
        for key, e in endpoints.items():
            assert set(e["statuses"]) == {"200"}, (size, key, e)
            assert 5 <= e["n"] <= listing["requests"], (size, key)
            assert 0 < e["p50_ms"] <= e["p95_ms"], (size, key)
        # what each filter finds is the same at both sizes: none failed, the few named, a full first page
        assert endpoints["state"]["items"] == 0
        assert endpoints["name"]["items"] == listing["named"]
        assert endpoints["first_page"]["items"] == 50
    assert all(value > 0 for value in listing["p50_ratio"].values())
    assert not any(problem.startswith(("listing", "memory", "events")) for problem in results["problems"])


@pytest.mark.timeout(480)
def test_report_charts_and_terminal_summary(quick_run: tuple[Path, dict[str, Any], str]) -> None:
    out, results, output = quick_run
    report = (out / "report.md").read_text()
    for name in SYSTEMS:
        assert f"`{name}`" in report
    for workload in WORKLOADS:
        assert f"### `{workload}`" in report
    assert f"{results['machine']['cores']} cores" in report
    for heading in (
        "## Targets",
        "## Ratios against the baselines",
        "## Mixed: I/O-bound and CPU-bound tasks together",
        "## Request rates",
        "## Cost per task",
        "### Redis memory per retained finished task",
        "### Listing with 1k and 10k finished tasks kept",
        "## Redis commands per task",
    ):
        assert heading in report
    assert "`template` events on" in report
    assert "`celery` events on" in report
    assert "How measured" in report
    for chart in ("throughput.png", "latency.png", "responsiveness.png", "rates.png"):
        data = (out / chart).read_bytes()
        assert data.startswith(b"\x89PNG")
        assert len(data) > 5_000
        assert f"]({chart})" in report
    assert results["machine"]["versions"]["celery"]
    assert results["settings"]["workers"] >= 1
    assert "targets (measured, not asserted)" in output
    assert all(t["measured"] is not None for t in results["targets"])
    names = [t["target"] for t in results["targets"]]
    for wanted in (  # every target of the issues has its row (what it measured is not checked)
        "background: no-op POST rate ≥ 0.5",
        "background: API CPU per POST /tasks/noop ≤ 2.5",
        "background: GET /tasks/{id} rate ≥ 0.5",
        "celery: GET /tasks/{id} = exactly one Redis command",
        "celery: Redis commands per task counting the calls inside scripts (MONITOR pass total) ≤ 1.2",
        "celery: no-op end-to-end throughput ≥ 1.0",
        "background: Redis memory per retained finished no-op task ≤ 1 KB",
        "celery: Redis memory per retained finished no-op task ≤ 1 KB",
        "background: GET /tasks?state=failed p50 ≤ 20 ms with 10k kept",
        "background: GET /tasks?name=… flat from 1k to 10k kept",
        "mixed: hybrid's API health p99 ≤ 1.5",
        "mixed: hybrid's sleep-task end-to-end p50 ≤ 1.2",
    ):
        assert any(name.startswith(wanted) for name in names), wanted


@pytest.mark.timeout(480)
def test_report_renders_again_from_results_json(quick_run: tuple[Path, dict[str, Any], str], tmp_path: Path) -> None:
    out, _, _ = quick_run
    shutil.copy(out / "results.json", tmp_path / "results.json")
    proc = subprocess.run(
        [sys.executable, "-m", "bench.report", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr

    def headings(report: Path) -> list[str]:
        return [line for line in report.read_text().splitlines() if line.startswith("#")]

    assert headings(tmp_path / "report.md") == headings(out / "report.md")
