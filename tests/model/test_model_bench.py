"""The model-scale benchmark runs and reports its figures (small sizes, to stay fast)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root holds bench/

from bench.model_scale import generate, load, resolve, run


def test_generated_cluster_loads_and_resolves_to_real_selections():
    docs = generate(pods=300, namespaces=10, policies=60)
    state = load(docs)
    assert len(state.pods) == 302 and len(state.policies) == 60
    assert resolve(state) > 300  # default-deny policies alone select every pod


def test_run_reports_time_and_memory_from_a_child_process():
    figures = run(pods=200, namespaces=10, policies=40, repeats=1)
    assert figures["pods"] == 200 and figures["policies"] == 40
    assert 0 < figures["total_s"] < 30
    assert 10 < figures["peak_rss_mb"] < 1000
    assert figures["resolved_pairs"] > 0
