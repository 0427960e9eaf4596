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
