"""`python -m bench --quick` runs end to end and reports every system and every metric, with sane values.

No timing thresholds: the machine may be busy. The checks are about presence, counts and consistency.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.plan import WORKLOADS
from bench.report import METRICS
from bench.systems import SYSTEMS
from tests.processes import ROOT, clean_environ

pytestmark = pytest.mark.slow

ALWAYS = [key for key, *_ in METRICS if key != "worker_cpu_s"]
LATENCIES = [key for key in ALWAYS if key.endswith("_ms")]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, json.loads((out / "results.json").read_text()), proc.stdout + proc.stderr


@pytest.mark.timeout(300)
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


@pytest.mark.timeout(300)
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


@pytest.mark.timeout(300)
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
    for name in ("background", "celery"):
        per = counts[name]["per_task"]
        assert counts[name]["reads_per_get"] == 1.0  # GET /tasks/{id} is one GET
        assert per["status_top_level"] >= 2  # create, then a short task's start and end: one script each
        assert per["results"] == 0
        assert per["total"] == pytest.approx(per["top_level"] + per["in_scripts"])
    assert counts["background"]["per_task"]["transport"] == 0
    assert counts["celery"]["per_task"]["transport"] > 0
    assert counts["template"]["per_task"]["results"] > 0
    assert counts["template"]["per_task"]["status"] == 0
    for c in counts.values():  # the MONITOR attribution accounts for what commandstats counted
        lines = c["monitor_lines_per_task"] * c["tasks"]
        assert c["not_this_system"]["unattributed"] <= 0.01 * lines  # a connection gone before it was mapped
        assert c["monitor_lines_per_task"] == pytest.approx(c["commandstats_per_task"], rel=0.1)


@pytest.mark.timeout(300)
def test_report_charts_and_terminal_summary(quick_run: tuple[Path, dict[str, Any], str]) -> None:
    out, results, output = quick_run
    report = (out / "report.md").read_text()
    for name in SYSTEMS:
        assert f"`{name}`" in report
    for workload in WORKLOADS:
        assert f"### `{workload}`" in report
    assert f"{results['machine']['cores']} cores" in report
    for heading in ("## Targets", "## Ratios against the baselines", "## Request rates", "## Redis commands per task"):
        assert heading in report
    for chart in ("throughput.png", "latency.png", "responsiveness.png", "rates.png"):
        data = (out / chart).read_bytes()
        assert data.startswith(b"\x89PNG")
        assert len(data) > 5_000
        assert f"]({chart})" in report
    assert results["machine"]["versions"]["celery"]
    assert results["settings"]["workers"] >= 1
    assert "targets (measured, not asserted)" in output
    assert all(t["measured"] is not None for t in results["targets"])
