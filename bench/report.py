"""The results schema of `make bench`: figures, the machine, and reading/writing latest.json.

A figure is one measured quantity under one configuration (e.g. TCP throughput with ours at
1,000 rules): every repeated measurement in `values`, summarised as median/min/max, with its
unit and the command that reproduces it. bench/README.md documents the JSON.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA = "enforcer-bench/1"
REPO_ROOT = Path(__file__).resolve().parents[1]
Params = dict[str, str | int | float]


@dataclass
class Target:
    """A goal from the issues: `statistic` (median or p99; the ratio when the figure has a
    baseline) must stay below `below` or above `above`."""

    below: float | None = None
    above: float | None = None
    statistic: str = "median"

    def met(self, value: float) -> bool:
        return (self.below is None or value < self.below) and (
            self.above is None or value > self.above
        )


@dataclass
class Figure:
    name: str  # the quantity, e.g. "datapath.tcp_throughput"
    unit: str
    values: list[float]
    params: Params = field(default_factory=dict)  # the configuration, e.g. {"rules": 1000}
    benchmark: str = ""
    command: str = ""
    description: str = ""
    baseline: str | None = None  # key of the figure this one is a ratio to, same run
    target: Target | None = None
    # Ratios to the baseline paired run by run (each measured next to its own baseline run):
    # when given, the figure's ratio is their median rather than the ratio of the medians.
    paired_ratios: list[float] | None = None

    @property
    def key(self) -> str:
        """Unique within a run: the name plus the configuration."""
        if not self.params:
            return self.name
        inner = ",".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.name}[{inner}]"

    def to_json(self, by_key: Mapping[str, Figure]) -> dict[str, Any]:
        if not self.values:
            raise ValueError(f"figure {self.key} has no values")
        med = statistics.median(self.values)
        out: dict[str, Any] = {
            "key": self.key,
            "name": self.name,
            "benchmark": self.benchmark,
            "params": self.params,
            "unit": self.unit,
            "median": med,
            "min": min(self.values),
            "max": max(self.values),
            "p99": percentile(self.values, 99),
            "runs": len(self.values),
            "values": list(self.values),
            "command": self.command,
            "description": self.description,
            "baseline": self.baseline,
            "paired_ratios": self.paired_ratios,
            "ratio": None,
            "target": None,
        }
        if self.baseline is not None and self.paired_ratios:
            out["ratio"] = statistics.median(self.paired_ratios)
        elif self.baseline is not None:
            base = by_key.get(self.baseline)
            if base is not None and base.values and statistics.median(base.values) != 0:
                out["ratio"] = med / statistics.median(base.values)
        if self.target is not None:
            # A target on a figure with a baseline applies to the ratio of the medians.
            stat = "ratio" if self.baseline is not None else self.target.statistic
            subject = out[stat]
            out["target"] = {
                **{k: v for k, v in asdict(self.target).items() if v is not None},
                "statistic": stat,
                "met": None if subject is None else self.target.met(subject),
            }
        return out


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (with few runs, p99 is the maximum: said as it is)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class BenchmarkRecord:
    """How one benchmark entry went in this run."""

    name: str
    module: str
    status: str  # "ok", "failed" or "missing"
    duration_s: float
    config: dict[str, Any]
    command: str
    error: str | None = None
    figures: int = 0


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine() -> dict[str, Any]:
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    mem_kb = next(
        (
            int(line.split()[1])
            for line in _read("/proc/meminfo").splitlines()
            if line.startswith("MemTotal:")
        ),
        0,
    )
    return {
        "kernel": platform.release(),
        "os": _os_name(),
        "arch": platform.machine(),
        "cpus": os.cpu_count() or 0,
        "cpu_model": cpu_model,
        "memory_mb": round(mem_kb / 1024),
        "python": platform.python_version(),
    }


def _os_name() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.system()


def git_revision() -> dict[str, Any]:
    def git(*args: str) -> str:
        proc = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        )
        return proc.stdout.strip() if proc.returncode == 0 else ""

    return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain"))}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def document(
    mode: str,
    started: str,
    duration_s: float,
    command: str,
    records: Iterable[BenchmarkRecord],
    figures: Sequence[Figure],
    plots: Sequence[str],
) -> dict[str, Any]:
    by_key = {f.key: f for f in figures}
    if len(by_key) != len(figures):
        dupes = sorted({f.key for f in figures if sum(g.key == f.key for g in figures) > 1})
        raise ValueError(f"duplicate figure keys: {dupes}")
    return {
        "schema": SCHEMA,
        "mode": mode,
        "command": command,
        "started": started,
        "finished": now(),
        "duration_s": duration_s,
        "machine": machine(),
        "git": git_revision(),
        "benchmarks": [asdict(r) for r in records],
        "figures": [f.to_json(by_key) for f in figures],
        "plots": list(plots),
    }


def write(doc: Mapping[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    if doc.get("schema") != SCHEMA:
        raise ValueError(f"{path}: schema {doc.get('schema')!r}, expected {SCHEMA!r}")
    return doc


def figures_by_key(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["key"]: f for f in doc["figures"]}
