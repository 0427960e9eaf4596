"""Where a benchmark sample's CPU time goes: each CPU's time by kind (/proc/stat), this
process's own threads (the flow drains) and its waited-for children (the test's client), per
unit of the test's work (a connection, a datagram).

A rate benchmark on a small machine is bound by the busiest CPU: what a program adds shows
as that CPU's time per unit, and this says in which kind (softirq, system, user, steal) and
on which CPU it lands, beside what the program's own run-time statistics account for."""

from __future__ import annotations

import os
from dataclasses import dataclass

# /proc/stat's per-CPU columns, in order (USER_HZ ticks), folded into the kinds reported.
COLUMNS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
KINDS = {"user": ("user", "nice"), "system": ("system",), "softirq": ("irq", "softirq"),
         "steal": ("steal",), "idle": ("idle", "iowait")}
TICK = 1.0 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Snapshot:
    cpus: dict[str, tuple[int, ...]]  # "cpu0" -> ticks per COLUMNS
    own: float  # this process's CPU seconds, all threads
    children: float  # waited-for descendants' CPU seconds


def snapshot() -> Snapshot:
    cpus = {}
    with open("/proc/stat") as stat:
        for line in stat:
            name, *values = line.split()
            if name.startswith("cpu") and name != "cpu":
                cpus[name] = tuple(int(v) for v in values[:len(COLUMNS)])
    times = os.times()
    return Snapshot(cpus, times.user + times.system,
                    times.children_user + times.children_system)


def per_unit(before: Snapshot, after: Snapshot, units: float) -> dict[str, float]:
    """Microseconds per unit: "cpu0 softirq" and the like for every CPU and kind, "cpu0 busy"
    (all but idle), then "bench process" (its threads: flow drains) and "client" (the test's
    own process)."""
    out: dict[str, float] = {}
    scale = 1e6 / max(units, 1e-9)
    for cpu, ticks in after.cpus.items():
        delta = dict(zip(COLUMNS, (a - b for a, b in zip(ticks, before.cpus[cpu],
                                                          strict=True)), strict=True))
        for kind, columns in KINDS.items():
            out[f"{cpu} {kind}"] = sum(delta[c] for c in columns) * TICK * scale
        out[f"{cpu} busy"] = sum(out[f"{cpu} {kind}"] for kind in KINDS if kind != "idle")
    out["bench process"] = (after.own - before.own) * scale
    out["client"] = (after.children - before.children) * scale
    return out
