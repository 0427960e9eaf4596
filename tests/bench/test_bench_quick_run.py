"""A smoke run of `make bench` (every benchmark, smallest configuration) yields every figure and
plot that the schema promises, with sane values, and leaves nothing behind."""

from __future__ import annotations

import json
import math
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import entries, plots, report
from enforcer.lab import topology as topo

pytestmark = pytest.mark.kernel
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# What the benchmarks create (other tests running at the same time create other names):
# labs `enf-bench-*`, the agent benches' node `enf-b<id>-*`, the datapath benches' pods.
OURS = re.compile(r"^enf-(bench-|b[0-9a-f]{6}-|[0-9a-f]{6}-(client|server|intruder)$)")
BPFFS = Path("/sys/fs/bpf")


def _ours() -> set[str]:
    pins = {str(p) for p in BPFFS.glob("enf-bench-*")}
    pins |= {str(p) for p in (BPFFS / "enforcer-lab").glob("bench-*")}
    return {ns for ns in topo.existing_netns() if OURS.match(ns)} | pins


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, str]:
    out = tmp_path_factory.mktemp("bench")
    before = _ours()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--profile", "smoke", "--out", str(out)],
        cwd=report.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    leftover = _ours() - before
    assert not leftover, f"benchmarks left namespaces or pins behind: {sorted(leftover)}"
    return report.load(out / "latest.json"), out, proc.stderr


def test_every_benchmark_ran_and_kept_its_promises(smoke_run: tuple) -> None:
    doc, _, _ = smoke_run
    assert [b["name"] for b in doc["benchmarks"]] == [b.name for b in entries.BENCHMARKS]
    for b in doc["benchmarks"]:
        assert b["status"] == "ok", f"{b['name']}: {b['error']}"
    have = report.figures_by_key(doc)
    for bench in entries.BENCHMARKS:
        promised = bench.promises(bench.config("smoke"))
        assert promised, bench.name
        missing = [k for k in promised if k not in have]
        assert not missing, f"{bench.name} did not yield {missing}"
        assert {k for k, f in have.items() if f["benchmark"] == bench.name} == set(promised)


def test_every_figure_is_sane(smoke_run: tuple) -> None:
    doc, _, _ = smoke_run
    have = report.figures_by_key(doc)
    for f in doc["figures"]:
        where = f["key"]
        assert f["unit"], where
        assert f["runs"] == len(f["values"]) >= 1, where
        assert all(math.isfinite(v) for v in f["values"]), where
        assert f["min"] == min(f["values"]) and f["max"] == max(f["values"]), where
        assert f["min"] <= f["median"] <= f["max"], where
        assert f["min"] <= f["p99"] <= f["max"], where
        assert f["median"] > 0, where  # times, rates and sizes: zero means nothing measured
        assert f["command"].startswith(".venv/bin/python -m bench.run"), where
        if f["baseline"] is not None:
            base = have[f["baseline"]]
            assert f["unit"] == base["unit"], where
            if f["paired_ratios"]:  # each run next to its own baseline run
                assert f["ratio"] == pytest.approx(statistics.median(f["paired_ratios"])), where
            else:
                assert f["ratio"] == pytest.approx(f["median"] / base["median"]), where
            assert math.isfinite(f["ratio"]) and f["ratio"] > 0, where
        if f["target"] is not None:
            assert isinstance(f["target"]["met"], bool), where


def test_machine_and_timestamps(smoke_run: tuple) -> None:
    doc, _, _ = smoke_run
    m = doc["machine"]
    assert m["kernel"] and m["cpu_model"] and m["cpus"] >= 1 and m["memory_mb"] > 0
    assert doc["mode"] == "smoke" and doc["schema"] == report.SCHEMA
    assert doc["started"] <= doc["finished"]
    assert doc["duration_s"] > 0


def test_every_promised_plot_is_a_png(smoke_run: tuple) -> None:
    doc, out, _ = smoke_run
    promised = plots.promised(b["name"] for b in doc["benchmarks"])
    assert set(promised) == {"datapath.png", "agent_latency.png", "cluster_scale.png"}
    assert sorted(doc["plots"]) == sorted(promised)
    for name in promised:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC), name
        assert len(data) > 10_000, name  # axes, lines and labels, not an empty canvas


def test_progress_names_every_benchmark(smoke_run: tuple) -> None:
    _, _, stderr = smoke_run
    total = len(entries.BENCHMARKS)
    for i, bench in enumerate(entries.BENCHMARKS, start=1):
        assert f"[{i}/{total}] {bench.name}: " in stderr


def test_results_file_is_plain_json(smoke_run: tuple) -> None:
    _, out, _ = smoke_run
    json.loads((out / "latest.json").read_text())  # no NaN/Infinity that strict parsers refuse
    text = (out / "latest.json").read_text()
    assert "NaN" not in text and "Infinity" not in text


def test_the_datapath_bench_drains_flow_events_as_the_agent(smoke_run: tuple) -> None:
    """Ours runs with every allowed new flow reported and drained (the agent's default): its
    rates include what flow events cost."""
    doc, _, _ = smoke_run
    drained = report.figures_by_key(doc)["datapath.flow_events_drained"]
    assert drained["min"] > 100, drained  # a smoke call opens thousands of connections
