"""A/B of datapath program variants: before committing a change to bpf/, measure it against
the program it would replace in one run.

Each variant is a directory of program sources (a copy of bpf/, edited) plus preprocessor
macros, so one copy can hold several experiments behind `#ifdef`s. The traffic is one of the
datapath benchmark's tests (`bench.datapath`) between two pod namespaces, with the server's
ingress table holding --rules entries as there. Rounds interleave no program and every
variant, each round starting one later; a variant's ratio is the median over rounds of its
value over that round's no-program value. On a 2-CPU machine two identical variants differ by
about 1% in new connections over 16 rounds: an effect smaller than that needs more rounds, or
is not there.

    .venv/bin/python -m bench.variants --variant main=bpf --variant exp=/tmp/bpf:EXP_X \\
        [--metric conn|udp|tcp] [--rounds 12] [--seconds 2] [--rules 10000] \\
        [--conntrack N] [--fill-conntrack] [--stats] [--cpu] [--json FILE]

A variant spec ending in +flows runs that variant as the agent runs by default: every allowed
new flow is reported too, and a thread drains the events through the agent's flow pipeline
(attribution, the flow store), so `--variant off=bpf --variant flows=bpf+flows` measures what
flow events and attribution cost, both in the kernel and in the agent's CPU time.

A variant spec ending in @tc or @tcx (before any +flows) sets how that variant is attached
(clsact filters, or TCX on kernel 6.6+; DatapathConfig.attach_mode), to measure what the
hooks themselves cost: e.g. `--variant tc=bpf@tc --variant tcx=bpf@tcx`. Without it, as the
agent: TCX where the kernel has it. A macro may carry a value:
`--variant lookup=bpf:FLOW_CACHE_SLOTS=0` is the program without its per-CPU flow memory
(bpf/lib/flowcache.h). CT_MAX=N sets that variant's conntrack table size instead of
--conntrack (the map is created with it, not only the macro), to measure what the table's
memory costs side by side: `--variant small=bpf:CT_MAX=8192`.

--fill-conntrack fills each variant's conntrack table to capacity first (a busy node's table
is full: every new flow evicts one). --stats turns on the kernel's bpf run-time statistics
and prints ns per program run; they cost each run two clock reads, so ratios measured with
them are lower than without. --cpu adds where each sample's CPU time went, per unit of the
test's work (a connection, a datagram, a Gbit): each CPU's time by kind, the flow drains' and
the client's (bench.cpu_time), and with --stats the program's own run time beside them and,
for every variant after the first, its time per unit above the first's (one over the rate),
paired per round and split into the program's own run time and the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import statistics
import struct
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

from bench import cpu_time
from bench.datapath import (
    CLIENT_IDENTITY,
    POD_FLOW_BUDGET,
    detach_programs,
    policy_with,
    prog_stats,
    set_identities,
    start_servers,
    stop_servers,
)
from bench.datapath import METRICS as DATAPATH_METRICS
from bench.flowdrain import flow_drain
from enforcer.datapath import Datapath, DatapathConfig, bpfsys
from enforcer.datapath.layout import CT_KEY, CT_VAL
from enforcer.datapath.loader import BPF_DIR_ENV
from enforcer.datapath.tcx import ATTACH_MODES
from enforcer.datapath.types import EndpointPolicy
from enforcer.topology import Pod, Topology

NO_PROGRAM = "none"
# --metric -> the datapath benchmark's test (its label and function).
METRICS: dict[str, tuple[str, Callable[[Pod, Pod, float], float]]] = {
    "conn": DATAPATH_METRICS["conn_kps"],
    "udp": DATAPATH_METRICS["udp_kpps"],
    "tcp": DATAPATH_METRICS["tcp_gbps"],
}
# --metric -> the unit --cpu reports per, and how many of it one unit of the test's value is
# per second (conn: k/s, udp: kpps, tcp: Gbit/s).
UNITS = {"conn": ("connection", 1e3), "udp": ("datagram", 1e3), "tcp": ("Gbit", 1.0)}


@dataclass(frozen=True)
class VariantConfig(DatapathConfig):
    """The datapath's configuration plus the variant's macros (-D flags)."""

    macros: tuple[str, ...] = ()

    def cflags(self, pin_dir: Path) -> list[str]:
        return [*super().cflags(pin_dir), *(f"-D{m}" for m in self.macros)]


@dataclass(frozen=True)
class Variant:
    name: str
    source: Path
    macros: tuple[str, ...] = field(default=())
    attach: str = "auto"  # DatapathConfig.attach_mode
    flows: bool = False  # report allowed new flows and drain them as the agent does
    conntrack: int | None = None  # its own conntrack table size (CT_MAX=N), else --conntrack


def parse_variant(spec: str) -> Variant:
    """NAME=DIR[:MACRO[,MACRO...]][@MODE][+flows] (a MACRO may be NAME=VALUE; MODE tc or
    tcx)."""
    flows = spec.endswith("+flows")
    spec = spec.removesuffix("+flows")
    name, sep, rest = spec.partition("=")
    rest, _, attach = rest.rpartition("@") if "@" in rest else (rest, "", "auto")
    if not sep or not name or not rest:
        raise argparse.ArgumentTypeError(
            f"--variant {spec!r}: expected NAME=DIR[:MACRO,...][@MODE]")
    if attach not in ATTACH_MODES:
        raise argparse.ArgumentTypeError(
            f"--variant {spec!r}: attach mode {attach!r} is not one of {', '.join(ATTACH_MODES)}")
    if name == NO_PROGRAM:
        raise argparse.ArgumentTypeError(f"--variant {spec!r}: {NO_PROGRAM!r} is the baseline")
    directory, _, macros = rest.partition(":")
    source = Path(directory)
    if not (source / "enforcer.c").is_file():
        raise argparse.ArgumentTypeError(f"--variant {name}: no enforcer.c in {source}")
    defines = [m for m in macros.split(",") if m]
    conntrack = None
    for define in [d for d in defines if d.startswith("CT_MAX=")]:
        defines.remove(define)  # the config passes it, with the map made that size
        size = define.removeprefix("CT_MAX=")
        if not size.isdigit() or int(size) < 1:
            raise argparse.ArgumentTypeError(f"--variant {spec!r}: CT_MAX must be a positive "
                                             f"number of entries, not {size!r}")
        conntrack = int(size)
    return Variant(name, source.resolve(), tuple(defines), attach, flows, conntrack)


def fill_conntrack(dp: Datapath, capacity: int) -> None:
    """Fill the table with entries no packet matches (family 0), in batches."""
    ct = dp._maps["ct"]
    value = CT_VAL.pack(0, 0, 0, 0)
    for base in range(0, capacity, 8192):
        ct.update_batch([(CT_KEY.pack(struct.pack("<I", i) + bytes(36), 0, 0), value)
                         for i in range(base, min(base + 8192, capacity))])


def load(variant: Variant, pin_root: Path, args: argparse.Namespace, client: Pod,
         server: Pod) -> Datapath:
    """Compile the variant from its own sources and write the benchmark's tables."""
    conntrack = variant.conntrack or args.conntrack
    config = VariantConfig(max_identities=args.rules + 16, max_conntrack=conntrack,
                           macros=variant.macros, attach_mode=variant.attach,
                           events_for_allowed_flows=variant.flows,
                           pod_flows_per_second=POD_FLOW_BUDGET, pod_flow_burst=POD_FLOW_BUDGET)
    saved = os.environ.get(BPF_DIR_ENV)
    os.environ[BPF_DIR_ENV] = str(variant.source)
    try:
        dp = Datapath.open(pin_root, config)
    except Exception as exc:
        raise SystemExit(f"variant {variant.name}: {exc}") from exc
    finally:
        if saved is None:
            os.environ.pop(BPF_DIR_ENV, None)
        else:
            os.environ[BPF_DIR_ENV] = saved
    dp.add_local_endpoints({IPv4Address(client.ipv4): (1, client.host_ifindex),
                            IPv4Address(server.ipv4): (2, server.host_ifindex)})
    set_identities(dp, client, server, args.rules)
    dp.set_endpoint(client.host_ifindex, 1, EndpointPolicy.allow_all())
    dp.set_endpoint(server.host_ifindex, 2, policy_with(args.rules, CLIENT_IDENTITY))
    if args.fill_conntrack:
        fill_conntrack(dp, conntrack)
    return dp


@contextmanager
def servers(server: Pod) -> Iterator[None]:
    procs = start_servers(server)
    try:
        yield
    finally:
        stop_servers(procs)


@dataclass
class Result:
    values: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    ns_per_run: list[float] = field(default_factory=list)
    # --cpu: per sample, microseconds per unit of work by where they went (bench.cpu_time),
    # and with --stats the program's runs and run time per unit.
    cpu: list[dict[str, float]] = field(default_factory=list)


def measure(args: argparse.Namespace) -> dict[str, Result]:
    variants: list[Variant] = args.variant
    results = {name: Result() for name in [NO_PROGRAM, *(v.name for v in variants)]}
    pin_roots: list[Path] = []
    loaded: dict[str, Datapath] = {}
    with Topology("routed") as topo:
        client, server = topo.add_pod(name="client"), topo.add_pod(name="server")
        try:
            for variant in variants:
                pin_roots.append(Path("/sys/fs/bpf") / f"enf-variant-{secrets.token_hex(4)}")
                print(f"compiling {variant.name} from {variant.source}"
                      + (f" with {', '.join(variant.macros)}" if variant.macros else "")
                      + (f", attach mode {variant.attach}" if variant.attach != "auto" else "")
                      + (f", {variant.conntrack} conntrack entries" if variant.conntrack
                         else ""),
                      file=sys.stderr, flush=True)
                loaded[variant.name] = load(variant, pin_roots[-1], args, client, server)
            stats_fd = bpfsys.enable_run_time_stats() if args.stats else None
            drains = [flow_drain(loaded[v.name], client, server) for v in variants if v.flows]
            try:
                with servers(server):
                    rounds(args, loaded, results, client, server, stats_fd)
            finally:
                for stop in drains:
                    stop()
                if stats_fd is not None:
                    os.close(stats_fd)  # the statistics stop with the last holder
        finally:
            detach_programs((client, server))
            for dp in loaded.values():
                dp.close()
            for root in pin_roots:
                shutil.rmtree(root, ignore_errors=True)
    return results


def rounds(args: argparse.Namespace, loaded: dict[str, Datapath],
           results: dict[str, Result], client: Pod, server: Pod, stats_fd: int | None) -> None:
    """Every round: no program and each variant, the order turned by one each round."""
    _, test = METRICS[args.metric]
    node = server.node.netns
    names = list(results)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            detach_programs((client, server))
            dp = loaded.get(name)
            before = (0, 0)
            if dp is not None:
                for pod in (client, server):
                    dp.attach(pod.host_ifindex, node)
                # A policy write bumps the epoch, as the benchmark's scenarios do.
                dp.set_endpoint(server.host_ifindex, 2, policy_with(args.rules, CLIENT_IDENTITY))
                if stats_fd is not None:
                    before = prog_stats(dp)
            cpu_before = cpu_time.snapshot() if args.cpu else None
            value = test(client, server, args.seconds)
            results[name].values.append(value)
            units = value * UNITS[args.metric][1] * args.seconds
            spent = (cpu_time.per_unit(cpu_before, cpu_time.snapshot(), units)
                     if cpu_before is not None else {})
            if dp is not None and stats_fd is not None:
                after = prog_stats(dp)
                ns, runs = after[0] - before[0], after[1] - before[1]
                results[name].ns_per_run.append(ns / max(runs, 1))
                spent |= {"program runs": runs / max(units, 1e-9),
                          "program (bpf statistics)": ns / 1e3 / max(units, 1e-9)}
            if cpu_before is not None:
                results[name].cpu.append(spent)
        # Paired with the baseline measured in the same round.
        baseline = results[NO_PROGRAM].values[-1]
        for name in names:
            results[name].ratios.append(results[name].values[-1] / baseline)
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{n} {results[n].values[-1]:.2f}" for n in names), file=sys.stderr, flush=True)


def report(results: dict[str, Result], metric: str) -> str:
    unit, _ = METRICS[metric]
    lines = [f"{'variant':20} {unit:>16} {'ratio (paired)':>15} {'ns/run':>8}"]
    for name, res in results.items():
        ns = f"{statistics.median(res.ns_per_run):8.0f}" if res.ns_per_run else f"{'':8}"
        lines.append(f"{name:20} {statistics.median(res.values):16.2f} "
                     f"{statistics.median(res.ratios):15.3f} {ns}")
    if any(res.cpu for res in results.values()):
        lines += ["", cpu_report(results, metric)]
        if len(results) > 2 and any(res.ns_per_run for res in results.values()):
            lines += ["", paired_split(results, metric)]
    return "\n".join(lines)


def cpu_report(results: dict[str, Result], metric: str) -> str:
    """Medians over rounds of each kind of CPU time per unit, a column per variant (µs; the
    program's runs as a count)."""
    keys = list(dict.fromkeys(k for res in results.values() for sample in res.cpu
                              for k in sample))
    names = list(results)
    width = max(9, max(len(n) for n in names) + 2)
    lines = [f"{'µs per ' + UNITS[metric][0]:26}" + "".join(f"{n:>{width}}" for n in names)]
    for key in keys:
        cells = []
        for name in names:
            values = [s[key] for s in results[name].cpu if key in s]
            cells.append(f"{statistics.median(values):{width}.2f}" if values else " " * width)
        lines.append(f"{key:26}" + "".join(cells))
    return "\n".join(lines)


def paired_split(results: dict[str, Result], metric: str) -> str:
    """Each variant after the first against the first, round by round: how much more time a
    unit of work took (one over the rate), how much of it the program's own run time accounts
    for (--cpu --stats), and the rest, outside the program; medians, the rest's quartiles."""
    unit, per_second = UNITS[metric]
    names = [n for n in results if n != NO_PROGRAM]
    base = results[names[0]]

    def took(value: float) -> float:  # µs per unit
        return 1e6 / (value * per_second) if value else float("nan")

    lines = [f"µs per {unit} above {names[0]}, paired per round: "
             "time, the program's run time, the rest (its quartiles)"]
    for name in names[1:]:
        res = results[name]
        time = [took(v) - took(b) for v, b in zip(res.values, base.values, strict=True)]
        program = [s["program (bpf statistics)"] - b["program (bpf statistics)"]
                   for s, b in zip(res.cpu, base.cpu, strict=True)]
        rest = [t - p for t, p in zip(time, program, strict=True)]
        q1, _, q3 = statistics.quantiles(rest, n=4) if len(rest) > 1 else (rest[0],) * 3
        lines.append(f"{name:20} {statistics.median(time):8.2f} {statistics.median(program):8.2f} "
                     f"{statistics.median(rest):8.2f} ({q1:.2f} to {q3:.2f})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.variants",
        description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--variant", action="append", type=parse_variant, required=True,
                        help="NAME=DIR[:MACRO,...][@tc|@tcx]: program sources, -D macros and "
                        "how it is attached (repeat)")
    parser.add_argument("--metric", choices=sorted(METRICS), default="conn")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=2.0, help="per sample")
    parser.add_argument("--rules", type=int, default=10000,
                        help="entries in the server's ingress table (and peer identities)")
    parser.add_argument("--conntrack", type=int, default=DatapathConfig.max_conntrack,
                        help="conntrack table entries")
    parser.add_argument("--fill-conntrack", action="store_true",
                        help="fill each variant's conntrack table before measuring")
    parser.add_argument("--stats", action="store_true",
                        help="bpf run-time statistics: ns per program run (lowers the ratios)")
    parser.add_argument("--cpu", action="store_true",
                        help="where each sample's CPU time went, per unit of work")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write every sample (values, ratios, ns/run, CPU time) here")
    args = parser.parse_args(argv)
    names = [v.name for v in args.variant]
    if len(set(names)) != len(names):
        parser.error(f"--variant names must differ: {', '.join(names)}")
    if args.rounds < 1 or args.seconds <= 0 or args.rules < 1:
        parser.error("--rounds and --rules must be at least 1, --seconds above 0")
    if args.metric != "conn" and args.seconds != int(args.seconds):
        parser.error(f"--seconds {args.seconds}: iperf3 (--metric {args.metric}) takes whole "
                     "seconds")
    # A kill (timeout, ^C) still removes the namespaces, pins and servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = measure(args)
    print(report(results, args.metric))
    if args.json:
        args.json.write_text(json.dumps({name: vars(res) for name, res in results.items()},
                                        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
