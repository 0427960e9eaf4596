"""The README's performance section, rendered from a results document (latest.json).

Figures with a baseline measured in the same run are stated as ratios to it; the others as
medians with their spread and the issue's target, so nothing reads as an absolute claim.

    .venv/bin/python -m bench.markdown [bench/results/latest.json]
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench import report

PLOT_TITLES = {
    "datapath.png": "Datapath: throughput, packet and connection rates against rule count",
    "agent_latency.png": "Agent: event-to-enforced latency, checked with packets",
    "cluster_scale.png": "Time and memory against cluster size",
}


def _num(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def _config(params: Mapping[str, Any]) -> str:
    return (
        ", ".join(f"{v:,} {k}" if isinstance(v, int) else f"{k} {v}" for k, v in params.items())
        or "-"
    )


def _target(f: Mapping[str, Any]) -> str:
    t = f["target"]
    if not t:
        return ""
    bound = f"< {_num(t['below'])}" if "below" in t else f"> {_num(t['above'])}"
    unit = "" if t["statistic"] == "ratio" else f" {f['unit']}"
    return f"{t['statistic']} {bound}{unit}: {'met' if t['met'] else '**not met**'}"


def _value(f: Mapping[str, Any]) -> str:
    spread = f"{_num(f['min'])}-{_num(f['max'])}" if f["runs"] > 1 else "1 run"
    text = f"{_num(f['median'])} {f['unit']} ({spread}"
    text += f", n={f['runs']})" if f["runs"] > 1 else ")"
    if f["target"] and f["target"]["statistic"] == "p99":
        text += f", p99 {_num(f['p99'])}"
    return text


def figure_row(f: Mapping[str, Any]) -> str:
    shown = (
        f"**{f['ratio']:.2f} x** baseline; {_value(f)}" if f["ratio"] is not None else (_value(f))
    )
    name = f["name"].split(".", 1)[1].replace("_", " ")
    return f"| {name} | {_config(f['params'])} | {shown} | {_target(f)} |"


def performance_section(doc: Mapping[str, Any], plots_dir: str = "bench/results") -> str:
    m = doc["machine"]
    lines = [
        "## Performance",
        "",
        f"Measured by `{doc['command']}` on {doc['finished'][:10]}: {m['cpu_model']}, "
        f"{m['cpus']} CPUs, {m['memory_mb']:,} MB, Linux {m['kernel']}. Each benchmark ran "
        "in the same run, one after the other; values are medians with min-max over the runs "
        "(n). Datapath figures are ratios to the same traffic with no program attached, "
        "measured in the same run. Targets are the issues' goals. Re-run with `make bench` "
        "(or `make bench-quick` for a first look); the raw numbers, every run's values and "
        "the machine are in `bench/results/latest.json` (schema: `bench/README.md`).",
        "",
    ]
    for p in doc["plots"]:
        lines += [f"![{PLOT_TITLES.get(p, p)}]({plots_dir}/{p})", ""]
    figures = doc["figures"]
    for b in doc["benchmarks"]:
        mine = [f for f in figures if f["benchmark"] == b["name"]]
        lines += [f"### {b['name'].replace('_', ' ')}", "", f"`{b['command']}`", ""]
        if b["status"] != "ok":
            first = (b["error"] or "").splitlines()[0] if b["error"] else ""
            lines += [f"Did not run to the end: {b['status']}: {first}", ""]
        if not mine:
            continue
        lines += [
            "| figure | configuration | result | target |",
            "| --- | --- | --- | --- |",
            *(figure_row(f) for f in mine),
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else report.REPO_ROOT / "bench" / "results" / "latest.json"
    print(performance_section(report.load(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
