"""Where a flow's time goes: the program's own run time per hook and per kind of packet.

Builds the program with -DPROFILE_KINDS (bpf/lib/profile.h), which times every run with the
kernel's clock and sums it per CPU by hook (the source pod's veth, tc_from_pod; the
destination's, tc_to_pod) and by packet kind (TCP SYN, SYN-ACK, bare ACK, data, FIN, RST;
UDP; other). Then runs the datapath benchmark's tests (`bench.datapath`) one after the other
between two pod namespaces, 10,000 rules in the server's ingress table, flow events on and
drained as the agent does, and prints per test: runs per connection (or per packet) and ns
per run for each hook and kind, less what a clock read costs, and the total program time per
connection or packet. Then the slow path's phases (the runs the flow memory did not pass:
a connection's SYN at each veth, a flow's first datagram), timed by marks in the program
(MARK in enforcer.c): the probe, the parse, the conntrack lookup, the endpoint and source
checks, the post-DNAT and Services checks, identity and policy, the flow budget and conntrack
write, and the rest (event, counter), each less one clock read.

    .venv/bin/python -m bench.flow_profile [--source bpf] [--seconds 5] [--rules 10000] \\
        [--metric conn --metric udp ...] [--json]

The clock reads make each run a little dearer than without them: compare variants with
`bench.variants`; this says where the time of one variant goes.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.datapath import detach_programs
from bench.flowdrain import flow_drain
from bench.variants import METRICS, Variant, load, servers
from enforcer.datapath import Datapath, DatapathConfig
from enforcer.topology import Topology

KINDS = ("other", "SYN", "SYN-ACK", "ACK", "data", "FIN", "RST", "UDP")
CLOCK = len(KINDS)  # the slot of the clock's own cost (PK_CLOCK)
ROWS = CLOCK + 1  # PK_KINDS
HOOKS = {1: "source veth (tc_from_pod)", 0: "destination veth (tc_to_pod)"}  # by direction
# lib/profile.h's PH_* rows, in order.
PHASES = ("probe", "parse", "conntrack lookup", "endpoint and source", "post-DNAT and Services",
          "identity and policy", "budget and conntrack write", "event, counter and return")


@dataclass(frozen=True)
class Cell:
    runs: int
    ns: int


def read_profile(dp: Datapath) -> dict[tuple[int, int], Cell]:
    """(direction, kind) -> runs and ns summed over CPUs; then zeroes the table."""
    table = dp.program.bpf[b"profile"]
    out: dict[tuple[int, int], Cell] = {}
    for row in range(2 * ROWS):
        per_cpu = table[table.Key(row)]
        out[divmod(row, ROWS)] = Cell(sum(v.runs for v in per_cpu), sum(v.ns for v in per_cpu))
    table.clear()
    return out


def read_phases(dp: Datapath) -> dict[tuple[int, int], Cell]:
    """(direction, phase) -> runs and ns summed over CPUs; then zeroes the table."""
    table = dp.program.bpf[b"profile_phases"]
    out: dict[tuple[int, int], Cell] = {}
    for row in range(2 * len(PHASES)):
        per_cpu = table[table.Key(row)]
        out[divmod(row, len(PHASES))] = Cell(sum(v.runs for v in per_cpu),
                                             sum(v.ns for v in per_cpu))
    table.clear()
    return out


def summarize_phases(phases: dict[tuple[int, int], Cell], clock_ns: dict[int, float],
                     units: float) -> dict[str, Any]:
    """Per hook: each phase's runs per unit and ns per run, less one clock read (each mark
    reads the clock once); and the slow path's total per unit."""
    out: dict[str, Any] = {}
    for direction, hook in HOOKS.items():
        rows, total = {}, 0.0
        for index, name in enumerate(PHASES):
            cell = phases[(direction, index)]
            if not cell.runs:
                continue
            ns = max(cell.ns / cell.runs - clock_ns[direction], 0.0)
            per_unit = cell.runs / units if units else 0.0
            total += ns * per_unit
            rows[name] = {"runs_per_unit": round(per_unit, 3), "ns_per_run": round(ns, 1)}
        out[hook] = {"phases": rows, "ns_per_unit": round(total, 1)}
    return out


def summarize(cells: dict[tuple[int, int], Cell], units: float) -> dict[str, Any]:
    """Per hook and kind: runs per unit (connection or packet) and ns per run less the
    clock's own cost; the program's total per unit."""
    result: dict[str, Any] = {"hooks": {}, "units": round(units)}
    total = 0.0
    for direction, hook in HOOKS.items():
        clock = cells[(direction, CLOCK)]
        clock_ns = clock.ns / clock.runs if clock.runs else 0.0
        rows = {}
        for kind, name in enumerate(KINDS):
            cell = cells[(direction, kind)]
            if not cell.runs:
                continue
            ns = max(cell.ns / cell.runs - clock_ns, 0.0)
            per_unit = cell.runs / units if units else 0.0
            total += ns * per_unit
            rows[name] = {"runs_per_unit": round(per_unit, 3), "ns_per_run": round(ns, 1)}
        result["hooks"][hook] = {"clock_ns": round(clock_ns, 1), "kinds": rows}
    result["ns_per_unit"] = round(total, 1)
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    variant = Variant("profile", Path(args.source).resolve(), ("PROFILE_KINDS",), flows=True)
    pin_root = Path("/sys/fs/bpf") / f"enf-profile-{secrets.token_hex(4)}"
    results: dict[str, Any] = {"rules": args.rules, "seconds": args.seconds, "tests": {}}
    with Topology("routed") as topo:
        client, server = topo.add_pod(name="client"), topo.add_pod(name="server")
        try:
            dp = load(variant, pin_root, args, client, server)
        except BaseException:
            shutil.rmtree(pin_root, ignore_errors=True)  # what a failed load pinned
            raise
        stop_drain = flow_drain(dp, client, server)
        try:
            for pod in (client, server):
                dp.attach(pod.host_ifindex, server.node.netns)
            with servers(server):
                for metric in args.metric:
                    label, test = METRICS[metric]
                    read_profile(dp)
                    read_phases(dp)
                    value = test(client, server, args.seconds)
                    cells, phases = read_profile(dp), read_phases(dp)
                    # conn: connections; udp: datagrams received; tcp: per second of stream.
                    units = value * 1e3 * args.seconds if metric != "tcp" else args.seconds
                    summary = summarize(cells, units)
                    clock = {d: summary["hooks"][hook]["clock_ns"] for d, hook in HOOKS.items()}
                    results["tests"][metric] = {
                        "label": label, "value": round(value, 2), **summary,
                        "slow_path": summarize_phases(phases, clock, units)}
        finally:
            stop_drain()
            detach_programs((client, server))
            dp.close()
            shutil.rmtree(pin_root, ignore_errors=True)
    return results


UNIT = {"conn": "connection", "udp": "datagram", "tcp": "second of stream"}


def report(results: dict[str, Any]) -> str:
    lines = []
    for metric, test in results["tests"].items():
        unit = UNIT[metric]
        lines.append(f"{test['label']}: {test['value']} ({results['rules']} rules, "
                     f"{results['seconds']:g} s); program time per {unit}: "
                     f"{test['ns_per_unit']:.0f} ns")
        for hook, data in test["hooks"].items():
            cells = ", ".join(f"{kind} {row['runs_per_unit']:g} x {row['ns_per_run']:.0f} ns"
                              for kind, row in data["kinds"].items())
            lines.append(f"  {hook}: {cells or 'no runs'} (clock read {data['clock_ns']:.0f} ns,"
                         " subtracted)")
        for hook, data in test["slow_path"].items():
            cells = ", ".join(f"{name} {row['runs_per_unit']:g} x {row['ns_per_run']:.0f} ns"
                              for name, row in data["phases"].items())
            lines.append(f"  {hook}, slow path: {cells or 'no runs'}; "
                         f"{data['ns_per_unit']:.0f} ns per {unit}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.flow_profile",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--source", default="bpf", help="program sources (default bpf)")
    parser.add_argument("--metric", action="append", choices=sorted(METRICS),
                        help="test to profile (repeat; default conn, udp and tcp)")
    parser.add_argument("--seconds", type=int, default=5, help="per test (whole seconds)")
    parser.add_argument("--rules", type=int, default=10000,
                        help="entries in the server's ingress table (and peer identities)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    args.metric = args.metric or ["conn", "udp", "tcp"]
    if not (Path(args.source) / "enforcer.c").is_file():
        parser.error(f"--source {args.source}: no enforcer.c there")
    if args.seconds < 1 or args.rules < 1:
        parser.error("--seconds and --rules must be at least 1")
    # load() reads these as bench.variants defines them.
    args.conntrack, args.fill_conntrack = DatapathConfig.max_conntrack, False
    results = run(args)
    print(json.dumps(results, indent=2) if args.json else report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
