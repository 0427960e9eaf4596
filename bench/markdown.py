"""The README's performance section, rendered from a results document (latest.json).

Figures with a baseline measured in the same run are stated as ratios to it; the others as
medians with their spread and the issue's target, so nothing reads as an absolute claim.

    .venv/bin/python -m bench.markdown [bench/results/latest.json]
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from itertools import pairwise
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
        return f"{v:.1f}".removesuffix(".0")
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


# The headline table: (label, figure name, params it must have). Among several matches (other
# cluster sizes) the one at 10,000 pods wins, else the largest.
HEADLINE: list[tuple[str, str, dict[str, Any]]] = [
    *(
        (
            f"{what}, {shown}, 10,000 rules",
            f"datapath.{metric}",
            {"variant": variant, "rules": 10000},
        )
        for what, metric in (
            ("TCP throughput", "tcp_throughput"),
            ("UDP packet rate", "udp_packet_rate"),
            ("new connections", "connection_rate"),
        )
        for variant, shown in (("ours", "ours"), ("iptables", "iptables + ipset"))
    ),
    # What attaching any TC program like ours costs before it does anything: the floor.
    *(
        (f"{what}, TC hooks with an empty program", f"datapath.{metric}",
         {"variant": "empty program"})
        for what, metric in (
            ("TCP throughput", "tcp_throughput"),
            ("UDP packet rate", "udp_packet_rate"),
            ("new connections", "connection_rate"),
        )
    ),
    # Ours over that floor, paired by round: what the program itself costs.
    *(
        (f"{what}, ours over the empty program, 10,000 rules", "datapath.vs_empty_program",
         {"variant": "ours", "rules": 10000, "metric": metric})
        for what, metric in (
            ("TCP throughput", "tcp_throughput"),
            ("UDP packet rate", "udp_packet_rate"),
            ("new connections", "connection_rate"),
        )
    ),
    ("program run time per packet, 1 rule", "datapath.program_time_per_packet", {"rules": 1}),
    (
        "program run time per packet, 10,000 rules",
        "datapath.program_time_per_packet",
        {"rules": 10000},
    ),
    ("pod add to enforced", "agent.event_to_enforced", {"event": "pod_add"}),
    ("label change to enforced", "agent.event_to_enforced", {"event": "label_change"}),
    ("policy change to enforced", "agent.event_to_enforced", {"event": "policy_change"}),
    ("agent CPU per pod add", "agent.event_cpu_time", {"event": "pod_add"}),
    ("agent pod add, event to maps written", "agent.event_compute_time", {"event": "pod_add"}),
    ("agent cold start to full enforcement", "agent.cold_start_time", {}),
    ("agent memory (RSS) when enforcing", "agent.rss", {}),
    ("compiler: full compile", "compile.full_time", {}),
    ("compiler: compute per pod add", "compile.event_compute_time", {"event": "pod_add"}),
    *(
        (f"{what}, 1,000 cluster-policy rules over none (same build, same run)",
         "tiers_datapath.vs_no_cluster_rules", {"metric": metric, "cluster_rules": 1000})
        for what, metric in (
            ("TCP throughput", "tcp_throughput"),
            ("UDP packet rate", "udp_packet_rate"),
            ("new connections", "connection_rate"),
        )
    ),
    ("cluster-policy change to enforced", "tiers_agent.event_to_enforced", {}),
    ("compiler: full compile, realistic cluster-policy mix", "tiers_compile.full_time",
     {"mix": "realistic"}),
    ("compiler: peak memory, realistic cluster-policy mix", "tiers_compile.peak_rss",
     {"mix": "realistic"}),
    ("model load + resolve", "model.load_resolve_time", {}),
    ("model peak memory", "model.peak_rss", {}),
    ("`lab up` of the upstream model", "lab.up_time", {}),
    ("one `lab probe` (81 pairs), all allowed", "lab.probe_time", {"policy": "none"}),
]


def _pick(figures: list[Mapping[str, Any]], name: str, need: Mapping[str, Any]) -> Any:
    found = [
        f
        for f in figures
        if f["name"] == name and all(f["params"].get(k) == v for k, v in need.items())
    ]
    if not found:
        return None
    at_10k = [f for f in found if f["params"].get("pods") == 10_000]
    return (at_10k or sorted(found, key=lambda f: f["params"].get("pods", 0)))[-1]


def headline_rows(figures: list[Mapping[str, Any]]) -> list[str]:
    rows = []
    for label, name, need in HEADLINE:
        f = _pick(figures, name, need)
        if f is None:
            continue
        size = f", {f['params']['pods']:,} pods" if "pods" in f["params"] else ""
        if f["ratio"] is not None:
            result = f"**{f['ratio']:.2f} x** no program"
        elif f["target"] and f["target"]["statistic"] == "p99":
            result = f"median {_num(f['median'])} {f['unit']}, p99 {_num(f['p99'])} {f['unit']}"
        else:
            result = f"{_num(f['median'])} {f['unit']}"
        rows.append(f"| {label}{size} | {result} | {_target(f)} | `{f['command']}` |")
    return rows


GROWTH = [
    ("model load + resolve", "model.load_resolve_time"),
    ("model peak memory", "model.peak_rss"),
    ("compiler full compile", "compile.full_time"),
    ("agent cold start", "agent.cold_start_time"),
    ("agent memory", "agent.rss"),
]


def growth_lines(figures: list[Mapping[str, Any]]) -> list[str]:
    """How each cost grows between the smallest and largest cluster measured."""
    out = []
    for label, name in GROWTH:
        sized = sorted(
            (f for f in figures if f["name"] == name and "pods" in f["params"]),
            key=lambda f: f["params"]["pods"],
        )
        if len(sized) < 2:
            continue
        steps = ", ".join(
            f"{_num(a['median'])} -> {_num(b['median'])} {a['unit']} (x"
            f"{b['median'] / a['median']:.1f} for x{b['params']['pods'] / a['params']['pods']:g} "
            "pods)"
            for a, b in pairwise(sized)
        )
        sizes = " / ".join(f"{f['params']['pods']:,}" for f in sized)
        out.append(f"- {label} at {sizes} pods: {steps}")
    return out


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
        "the machine are in `bench/results/latest.json` (schema: `bench/README.md`). A "
        "ratio above 1 is run-to-run noise (the program only adds work): on a small shared "
        "machine, read it as the noise level of the run.",
        "",
    ]
    figures = doc["figures"]
    lines += [
        "| what | result | target | command |",
        "| --- | --- | --- | --- |",
        *headline_rows(figures),
        "",
    ]
    growth = growth_lines(figures)
    if growth:
        lines += [
            "How cost grows with cluster size (0.2 policies per pod, 20 pods per "
            "namespace; medians):",
            "",
            *growth,
            "",
        ]
    for p in doc["plots"]:
        lines += [f"![{PLOT_TITLES.get(p, p)}]({plots_dir}/{p})", ""]
    lines += ["<details><summary>Every figure of the run</summary>", ""]
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
    lines += ["</details>"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else report.REPO_ROOT / "bench" / "results" / "latest.json"
    print(performance_section(report.load(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
