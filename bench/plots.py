"""PNG plots of a run's figures (matplotlib, headless). Each plot draws medians with min-max
error bars, so the spread over repeated runs is visible, not hidden.

One function per plot; PLOTS says which benchmark each needs, so a run of some benchmarks
makes exactly the plots that it can (`promised`).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from bench.report import Figure

PLAIN = FuncFormatter(lambda v, _: f"{v:,.3g}")  # 0.1, 10, 1,000: no 10^x on log axes
COLORS = {"none": "#777777", "ours": "#1f77b4", "iptables": "#d62728",
          "empty program": "#2ca02c"}
LABELS = {"none": "no program", "ours": "ours (eBPF, TC)", "iptables": "iptables + ipset",
          "empty program": "TC hooks, empty program"}


def _named(figures: Iterable[Figure], name: str) -> list[Figure]:
    return [f for f in figures if f.name == name]


def _by_rules(ax: Axes, figs: Sequence[Figure], **kw: object) -> None:
    """One line of figures against their rule count (nothing if there are none)."""
    series = sorted(figs, key=lambda f: int(f.params["rules"]))
    if series:
        _errorbar(ax, [int(f.params["rules"]) for f in series], series, **kw)


def _errorbar(
    ax: Axes, xs: Sequence[float], figs: Sequence[Figure], scale: float = 1.0, **kw: object
) -> None:
    med = [statistics.median(f.values) * scale for f in figs]
    lo = [m - min(f.values) * scale for m, f in zip(med, figs, strict=True)]
    hi = [max(f.values) * scale - m for m, f in zip(med, figs, strict=True)]
    ax.errorbar(xs, med, yerr=[lo, hi], marker="o", capsize=3, **kw)  # type: ignore[arg-type]


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- datapath -----------------------------------------------------------------------------------

DATAPATH_PANELS = [
    ("datapath.tcp_throughput", "TCP throughput (iperf3)"),
    ("datapath.udp_packet_rate", "UDP packet rate"),
    ("datapath.connection_rate", "new TCP connections"),
    ("datapath.program_time_per_packet", "our program's run time per packet"),
]


def datapath(figures: Sequence[Figure], out: Path) -> Path | None:
    panels = [(n, t, _named(figures, n)) for n, t in DATAPATH_PANELS]
    panels = [p for p in panels if p[2]]
    if not panels:
        return None
    cols = min(2, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (name, title, figs) in zip(axes.flat, panels, strict=False):
        unit = figs[0].unit
        base = [f for f in figs if f.params.get("variant") == "none"]
        rules = sorted({int(f.params["rules"]) for f in figs if "rules" in f.params})
        if base:
            med = statistics.median(base[0].values)
            ax.axhline(med, color=COLORS["none"], ls="--", label=LABELS["none"])
            ax.axhspan(min(base[0].values), max(base[0].values), color=COLORS["none"], alpha=0.15)
        empty = [f for f in figs if f.params.get("variant") == "empty program"]
        if empty:  # the attachment's own cost: the floor for any TC program
            ax.axhline(statistics.median(empty[0].values), color=COLORS["empty program"],
                       ls=":", label=LABELS["empty program"])
        for variant in ("ours", "iptables"):
            _by_rules(
                ax,
                [f for f in figs if f.params.get("variant") == variant and "rules" in f.params],
                color=COLORS[variant],
                label=LABELS[variant],
            )
        if name == "datapath.program_time_per_packet":
            for packet, style in (("established", ":"), ("denied_new_flow", "-.")):
                _by_rules(
                    ax,
                    [
                        f
                        for f in figures
                        if f.name == "datapath.test_run_time" and f.params.get("packet") == packet
                    ],
                    ls=style,
                    color=COLORS["ours"],
                    label=f"test run, {packet.replace('_', ' ')} packet",
                )
        ax.set_xscale("log")
        ax.set_xticks(rules, [f"{r:,}" for r in rules])
        ax.set_xlabel("allow rules on the destination pod")
        ax.set_ylabel(unit)
        ax.set_ylim(bottom=0)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    fig.suptitle("Datapath between two pod namespaces (median, min-max bars)")
    return _save(fig, out / "datapath.png")


# -- agent latency ------------------------------------------------------------------------------


def agent_latency(figures: Sequence[Figure], out: Path) -> Path | None:
    lat = _named(figures, "agent.event_to_enforced")
    if not lat:
        return None
    fig, (ax_cdf, ax_box) = plt.subplots(1, 2, figsize=(11, 4))
    for f in lat:
        xs = sorted(f.values)
        ys = [(i + 1) / len(xs) for i in range(len(xs))]
        ax_cdf.step(xs, ys, where="post", label=str(f.params["event"]).replace("_", " "))
    ax_cdf.axvline(100, color="#d62728", ls=":", label="target p99 100 ms")
    ax_cdf.set_xscale("log")
    ax_cdf.xaxis.set_major_formatter(PLAIN)
    ax_cdf.xaxis.set_minor_formatter(NullFormatter())
    ax_cdf.set_xlabel("ms from the manifest's rename to the flipped verdict")
    ax_cdf.set_ylabel("fraction of changes")
    ax_cdf.set_title("event-to-enforced latency (CDF)")
    ax_cdf.grid(alpha=0.3, which="both")
    ax_cdf.legend(fontsize=8)
    ax_box.boxplot([f.values for f in lat], whis=(1, 99))
    ax_box.set_xticks(
        range(1, len(lat) + 1), [str(f.params["event"]).replace("_", " ") for f in lat]
    )
    ax_box.set_ylabel("ms")
    ax_box.set_title("per event (box: quartiles, whiskers p1-p99)")
    ax_box.grid(alpha=0.3)
    p = lat[0].params
    fig.suptitle(f"Agent with {int(p['pods']):,} pods and {int(p['policies']):,} policies loaded")
    return _save(fig, out / "agent_latency.png")


# -- cost against cluster size ------------------------------------------------------------------


def _by_pods(figs: Iterable[Figure]) -> list[Figure]:
    return sorted(figs, key=lambda f: int(f.params["pods"]))


def cluster_scale(figures: Sequence[Figure], out: Path) -> Path | None:
    load = _by_pods(_named(figures, "model.load_resolve_time"))
    if not load:
        return None
    mem = _by_pods(_named(figures, "model.peak_rss"))
    compile_ = _by_pods(_named(figures, "compile.full_time"))
    cold = _by_pods(_named(figures, "agent.cold_start_time"))
    rss = _by_pods(_named(figures, "agent.rss"))
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4))

    def pods(fs: Sequence[Figure]) -> list[int]:
        return [int(f.params["pods"]) for f in fs]

    _errorbar(ax_t, pods(load), load, label="model: load + resolve")
    if compile_:
        _errorbar(ax_t, pods(compile_), compile_, label="compiler: full compile")
    if cold:
        _errorbar(ax_t, pods(cold), cold, label="agent: cold start to enforced")
    _errorbar(ax_m, pods(mem), mem, label="model: peak RSS")
    if rss:
        _errorbar(ax_m, pods(rss), rss, label="agent: RSS when enforcing")
    for ax, ylabel, title in (
        (ax_t, "s", "time against cluster size"),
        (ax_m, "MB", "memory against cluster size"),
    ):
        ax.set_xscale("log")
        ax.set_yscale("log")
        sizes = sorted({int(f.params["pods"]) for f in (*load, *cold, *rss)})
        ax.set_xticks(sizes, [f"{s:,}" for s in sizes])
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(PLAIN)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("pods (0.2 policies per pod, 20 pods per namespace)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    return _save(fig, out / "cluster_scale.png")


# -- all ----------------------------------------------------------------------------------------

PlotFn = Callable[[Sequence[Figure], Path], Path | None]
# file name, the benchmark whose figures it needs, the function
PLOTS: list[tuple[str, str, PlotFn]] = [
    ("datapath.png", "datapath", datapath),
    ("agent_latency.png", "agent_latency", agent_latency),
    ("cluster_scale.png", "model_scale", cluster_scale),
]


def promised(benchmarks: Iterable[str]) -> list[str]:
    """The plot files a run of these benchmarks (all successful) makes."""
    ran = set(benchmarks)
    return [name for name, needs, _ in PLOTS if needs in ran]


def make_all(figures: Sequence[Figure], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for _, _, fn in PLOTS:
        path = fn(figures, out)
        if path is not None:
            made.append(path)
    return made
