"""`bench.cpu_time`: a sample's CPU time per unit of work, each CPU's by kind and the
processes' own, from two snapshots."""

from __future__ import annotations

import os

import pytest

from bench.cpu_time import TICK, Snapshot, per_unit, snapshot


def _ticks(user: int = 0, system: int = 0, idle: int = 0, softirq: int = 0,
           steal: int = 0) -> tuple[int, ...]:
    # /proc/stat's order: user nice system idle iowait irq softirq steal
    return (user, 0, system, idle, 0, 0, softirq, steal)


def test_each_cpus_time_is_split_by_kind_per_unit() -> None:
    before = Snapshot({"cpu0": _ticks(), "cpu1": _ticks()}, own=1.0, children=2.0)
    after = Snapshot({"cpu0": _ticks(user=10, system=20, softirq=30, steal=5, idle=35),
                      "cpu1": _ticks(idle=100)}, own=1.5, children=2.25)
    spent = per_unit(before, after, units=1000)
    us = TICK * 1e6 / 1000  # one tick over 1,000 units, in µs
    assert spent["cpu0 user"] == pytest.approx(10 * us)
    assert spent["cpu0 system"] == pytest.approx(20 * us)
    assert spent["cpu0 softirq"] == pytest.approx(30 * us)
    assert spent["cpu0 steal"] == pytest.approx(5 * us)
    assert spent["cpu0 idle"] == pytest.approx(35 * us)
    assert spent["cpu0 busy"] == pytest.approx(65 * us)  # all but idle
    assert spent["cpu1 busy"] == 0 and spent["cpu1 idle"] == pytest.approx(100 * us)
    assert spent["bench process"] == pytest.approx(0.5e6 / 1000)
    assert spent["client"] == pytest.approx(0.25e6 / 1000)


def test_a_snapshot_sees_this_process_burn_cpu() -> None:
    before = snapshot()
    assert set(before.cpus) == {f"cpu{i}" for i in range(len(before.cpus))}
    end = os.times().user + 0.2
    while os.times().user < end:
        pass
    spent = per_unit(before, snapshot(), units=1)
    assert spent["bench process"] >= 0.2e6
    assert sum(spent[f"{cpu} busy"] for cpu in before.cpus) >= 0.15e6


def test_a_variants_time_above_the_first_splits_into_program_and_rest() -> None:
    """bench.variants --cpu --stats: per round, one over the rate above the first variant's,
    less the program's run time above the first's, is the rest."""
    from bench.variants import Result, paired_split

    def result(rates: list[float], program_us: list[float]) -> Result:
        return Result(values=rates, ns_per_run=[1.0] * len(rates),
                      cpu=[{"program (bpf statistics)": p} for p in program_us])

    split = paired_split({"none": Result(values=[50.0, 50.0]),
                          "empty": result([40.0, 50.0], [0.5, 0.5]),
                          "main": result([25.0, 40.0], [2.5, 2.0])}, "conn")
    header, row = split.splitlines()
    assert header.startswith("µs per connection above empty")
    # Round 1: 1e3/25 - 1e3/40 = 15 µs, program 2 µs above; round 2: 25 - 20 = 5, 1.5 above.
    name, time, program, rest = row.split()[:4]
    assert name == "main"
    assert float(time) == pytest.approx(10.0)  # the median of 15 and 5
    assert float(program) == pytest.approx(1.75)
    assert float(rest) == pytest.approx((13 + 3.5) / 2)
