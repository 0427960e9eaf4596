"""The harness without a kernel: statistics, ratios and targets, a failing or missing benchmark
reported while the others still run, and the flip detection of the latency probe."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from bench import entries, run
from bench.flip_probe import Attempt, flip_time, settled
from bench.report import Figure, Target, percentile


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 99) == 99.0
    assert percentile(values, 50) == 50.0
    assert percentile([3.0, 1.0, 2.0], 99) == 3.0  # with few runs p99 is the maximum


def test_ratio_and_target_on_the_ratio() -> None:
    base = Figure("x.rate", "ops/s", [100.0, 90.0, 110.0], {"variant": "none"})
    ours = Figure(
        "x.rate",
        "ops/s",
        [96.0, 80.0, 99.0],
        {"variant": "ours"},
        baseline=base.key,
        target=Target(above=0.95),
    )
    out = ours.to_json({base.key: base, ours.key: ours})
    assert out["median"] == 96.0 and out["min"] == 80.0 and out["max"] == 99.0
    assert out["runs"] == 3
    assert out["ratio"] == pytest.approx(0.96)
    assert out["target"] == {"above": 0.95, "statistic": "ratio", "met": True}


def test_target_on_p99() -> None:
    f = Figure("lat", "ms", [10.0] * 98 + [150.0, 150.0], target=Target(below=100, statistic="p99"))
    out = f.to_json({})
    assert out["median"] == 10.0 and out["p99"] == 150.0
    assert out["target"]["met"] is False


def test_figure_without_values_is_refused() -> None:
    with pytest.raises(ValueError, match="no values"):
        Figure("empty", "s", []).to_json({})


def _bench(collect: Any, promises: list[str]) -> entries.Benchmark:
    return entries.Benchmark(
        name="fake",
        module="bench.report",
        description="",
        quick={},
        full={},
        collect=collect,
        promises=lambda cfg: promises,
    )


def test_a_failing_benchmark_is_reported_not_raised() -> None:
    def boom(mod: ModuleType, cfg: dict, note: Any) -> list[Figure]:
        raise RuntimeError("datapath exploded")

    record, figures = run.run_one(_bench(boom, ["a"]), "quick", lambda _: None)
    assert record.status == "failed" and "datapath exploded" in (record.error or "")
    assert figures == []


def test_a_broken_promise_fails_the_benchmark() -> None:
    def partial(mod: ModuleType, cfg: dict, note: Any) -> list[Figure]:
        return [Figure("a", "s", [1.0])]

    record, figures = run.run_one(_bench(partial, ["a", "b"]), "quick", lambda _: None)
    assert record.status == "failed" and "b" in (record.error or "")
    assert [f.key for f in figures] == ["a"]
    assert figures[0].command == ".venv/bin/python -m bench.run --quick --only fake"


def test_a_missing_module_is_reported_as_missing() -> None:
    bench = entries.Benchmark(
        name="ghost",
        module="bench.no_such_module",
        description="",
        quick={},
        full={},
        collect=lambda m, c, n: [],
        promises=lambda cfg: [],
    )
    record, _ = run.run_one(bench, "full", lambda _: None)
    assert record.status == "missing"


def test_every_entry_promises_figures_in_every_profile() -> None:
    for bench in entries.BENCHMARKS:
        for profile in ("full", "quick", "smoke"):
            keys = bench.promises(bench.config(profile))
            assert keys and len(keys) == len(set(keys)), (bench.name, profile)


def _attempts(*verdicts: bool | None, start: float = 0.0, step: float = 0.002) -> list[Attempt]:
    return [Attempt(start + i * step, v) for i, v in enumerate(verdicts)]


def test_flip_time_is_the_first_of_a_confirmed_run() -> None:
    a = _attempts(False, False, True, False, True, True, True, True)
    # the lone True at index 2 is not confirmed; the run starting at index 4 is
    assert flip_time(a, 0.0, True, 3) == pytest.approx(0.008)


def test_flip_time_waits_for_unresolved_earlier_attempts() -> None:
    a = _attempts(False, None, True, True, True)
    assert flip_time(a, 0.0, True, 3) is None
    a[1].ok = True
    assert flip_time(a, 0.0, True, 3) == pytest.approx(0.002)


def test_flip_time_ignores_attempts_before_the_change() -> None:
    a = _attempts(True, True, True, False, True, True, True)
    assert flip_time(a, 0.005, True, 3) == pytest.approx(0.008)


def test_settled_needs_every_earlier_attempt_resolved() -> None:
    assert settled(_attempts(True, False, False, False), False, 3)
    assert not settled(_attempts(False, None, False, False), False, 3)
    assert not settled(_attempts(False, False), False, 3)


def test_readme_splice_replaces_only_the_performance_section() -> None:
    from bench.readme import splice

    readme = "# T\n\nintro\n\n## Performance\n\nold table\n\n## Install\n\nsteps\n"
    out = splice(readme, "## Performance\n\nnew table\n")
    assert out == "# T\n\nintro\n\n## Performance\n\nnew table\n\n## Install\n\nsteps\n"
    last = splice("# T\n## Performance\nold\n", "## Performance\nnew\n")  # the last section
    assert last == "# T\n## Performance\nnew\n\n"
    with pytest.raises(ValueError, match="no '## Performance'"):
        splice("# T\n## Other\n", "## Performance\nx\n")
    with pytest.raises(ValueError, match="does not start"):
        splice(readme, "table without its heading\n")
