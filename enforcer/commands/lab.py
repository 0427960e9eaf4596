"""`enforcer lab ...`: run a cluster in network namespaces with the real agent and datapath."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from enforcer.commands.reading import accept_groups, add_accept_group

PROTOCOLS = ("TCP", "UDP", "SCTP")


def register(sub: argparse._SubParsersAction) -> None:
    lab = sub.add_parser(
        "lab",
        help="a cluster in network namespaces, with the real agent and datapath",
        description="Pods become network namespaces behind node namespaces; one real agent "
        "runs per node; probes send real packets. Needs root.",
    )
    ls = lab.add_subparsers(dest="lab_command", metavar="LAB_COMMAND")

    up = ls.add_parser("up", help="create a lab from manifests and wait until it is enforced")
    up.add_argument("paths", nargs="+", metavar="FILE_OR_DIR")
    up.add_argument("--name", default="lab")
    up.add_argument("--topology", choices=["routed", "bridged"], default="routed")
    up.add_argument(
        "--nodes",
        type=_positive,
        default=1,
        help="the nodes the manifests name, then node1, node2, ... up to N; pods without "
        "nodeName are spread over them",
    )
    up.add_argument("--ipv6", action="store_true", help="give pods IPv6 addresses too")
    up.add_argument("--timeout", type=float, default=60.0)
    up.add_argument(
        "--services",
        choices=["none", "per-pod"],
        default="none",
        help="per-pod: a Service (s-POD) for every pod, as the upstream e2e suite makes",
    )
    up.add_argument("--dns", action="store_true", help="a DNS pod and its kube-dns Service")
    up.add_argument(
        "--cni-masquerade",
        action="store_true",
        help="SNAT pod traffic leaving the pod network to the node's address, as flannel does",
    )
    up.add_argument(
        "--proxy-mode",
        choices=["iptables", "nftables"],
        default="iptables",
        help="kube-proxy's mode for the lab's Services (its rules in every node namespace)",
    )
    add_accept_group(up)
    up.set_defaults(func=run_up)

    ap = ls.add_parser("apply", help="create or replace objects, wait until enforced")
    ap.add_argument("paths", nargs="+", metavar="FILE_OR_DIR")
    ap.add_argument("--name", default="lab")
    ap.add_argument("--timeout", type=float, default=60.0)
    add_accept_group(ap)
    ap.set_defaults(func=run_apply)

    de = ls.add_parser("delete", help="remove objects, wait until enforced")
    de.add_argument("paths", nargs="+", metavar="FILE_OR_DIR")
    de.add_argument("--name", default="lab")
    de.add_argument("--timeout", type=float, default=60.0)
    add_accept_group(de)
    de.set_defaults(func=run_delete)

    pr = ls.add_parser("probe", help="a new connection from every pod to every pod")
    pr.add_argument("--name", default="lab")
    pr.add_argument("--port", type=int, default=None, help="default: every declared port")
    pr.add_argument("--protocol", choices=PROTOCOLS, default=None)
    pr.add_argument("--family", type=int, choices=[4, 6], default=4)
    pr.add_argument("--output", choices=["table", "json"], default="table")
    pr.add_argument("--timeout", type=float, default=1.0, help="per-probe timeout in seconds")
    pr.add_argument(
        "--check", action="store_true", help="compare with the model; exit 1 on any disagreement"
    )
    pr.add_argument(
        "--via",
        choices=["pod", "service"],
        default="pod",
        help="service: connect to each pod through a ClusterIP of a Service whose only "
        "backend it is (kube-proxy translates; lab up --services per-pod makes them)",
    )
    pr.set_defaults(func=run_probe)

    ex = ls.add_parser("exec", help="run a command inside a pod's network namespace")
    ex.add_argument("--name", default="lab")
    ex.add_argument("pod", metavar="NS/POD")
    ex.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND...")
    ex.set_defaults(func=run_exec)

    st = ls.add_parser("status", help="nodes, pods and what each agent enforces")
    st.add_argument("--name", default=None, help="default: list the labs")
    st.add_argument("--output", choices=["table", "json"], default="table")
    st.set_defaults(func=run_status)

    from enforcer.commands.flows import add_filter_args

    fl = ls.add_parser("flows", help="the flows every node's agent saw, merged (as `flows`)")
    fl.add_argument("--name", default="lab")
    add_filter_args(fl)
    fl.set_defaults(func=run_flows)

    from enforcer.commands.status import add_monitor_args

    mo = ls.add_parser("monitor", help="drop events from the lab's node agents (as `monitor`)")
    mo.add_argument("--name", default="lab")
    mo.add_argument("--node", default=None, help="only this node's agent (default: every node)")
    add_monitor_args(mo)
    mo.add_argument("--output", choices=["table", "json"], default="table")
    mo.set_defaults(func=run_monitor)

    dn = ls.add_parser("down", help="remove a lab (namespaces, processes, pinned maps)")
    dn.add_argument("--name", default=None)
    dn.add_argument("--all", action="store_true", help="remove every lab on this machine")
    dn.set_defaults(func=run_down)
    lab.set_defaults(func=lambda args: (lab.print_help(), 2)[1])


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a number of 1 or more, got {text!r}")
    return int(text)


def _progress(msg: str) -> None:
    print(f"[lab] {msg}", file=sys.stderr, flush=True)


def _fail(exc: Exception) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 1


def run_up(args: argparse.Namespace) -> int:
    from enforcer.lab import lab

    start = time.monotonic()
    try:
        state = lab.up(
            args.paths,
            args.name,
            args.topology,
            args.nodes,
            args.ipv6,
            _progress,
            args.timeout,
            services=args.services,
            dns=args.dns,
            cni_masquerade=args.cni_masquerade,
            proxy_mode=args.proxy_mode,
            accept_groups=_accept_groups(args),
        )
    except lab.LabError as exc:
        return _fail(exc)
    _progress(
        f"lab {state.name} enforced: {len(state.pods)} pods on {len(state.nodes)} node(s) "
        f"in {time.monotonic() - start:.1f} s"
    )
    if state.console_url:
        _progress(f"console: {state.console_url}")
    return 0


def _accept_groups(args: argparse.Namespace) -> tuple[str, ...]:
    from enforcer.lab import lab

    groups = accept_groups(args)
    if isinstance(groups, str):
        raise lab.LabError(groups)
    return groups


def run_apply(args: argparse.Namespace) -> int:
    return _change(args, "apply", "applied")


def run_delete(args: argparse.Namespace) -> int:
    return _change(args, "delete", "deleted")


def _change(args: argparse.Namespace, operation: str, done: str) -> int:
    from enforcer.lab import lab

    try:
        change = getattr(lab, operation)  # lab.apply or lab.delete: same shape
        took = change(lab.LabState.load(args.name), args.paths, args.timeout,
                      accept_groups=_accept_groups(args))
    except lab.LabError as exc:
        return _fail(exc)
    _progress(f"{done} and enforced in {took * 1000:.0f} ms")
    return 0


def probe_documents(
    state: Any,
    port: int | None,
    protocol: str | None,
    family: int,
    timeout: float,
    via: str = "pod",
) -> list[dict[str, Any]]:
    """`lab probe`'s documents: one port, or every declared port (of `protocol`, if given)."""
    from enforcer.lab import lab

    ports = [(port, protocol or "TCP")] if port else lab.declared_ports(state, protocol)
    return probe_ports(state, ports, family, timeout, via)


def probe_ports(
    state: Any,
    ports: Sequence[tuple[int, str]],
    family: int,
    timeout: float,
    via: str = "pod",
) -> list[dict[str, Any]]:
    """A matrix document per (port, protocol), all probed at once; `via` "service": to each
    pod through the Service that has it as its only backend on that port."""
    from enforcer.analysis.matrix import matrix_document
    from enforcer.lab import lab
    from enforcer.lab.probe import PortProbe, ProbeEndpoint, probe_matrices

    endpoints = lab.probe_endpoints(state, family)
    probes = []
    for p, proto in ports:
        if via != "service":
            probes.append(PortProbe(p, proto))
            continue
        targets = lab.service_targets(state, p, proto, family)
        dsts = [
            ProbeEndpoint(e.key, e.netns, targets[e.key][1], via=targets[e.key][0])
            for e in endpoints
            if e.key in targets
        ]
        probes.append(PortProbe(p, proto, dsts))
    docs = []
    for probe, matrix in zip(probes, probe_matrices(endpoints, probes, timeout), strict=True):
        doc = matrix_document(probe.port, probe.protocol, matrix)
        if probe.destinations is not None:
            doc["via"] = "service"
            doc["services"] = {d.key: d.via for d in probe.destinations}
        docs.append(doc)
    return docs


def check_documents(state: Any, docs: list[dict[str, Any]], family: int) -> list[str]:
    """Every pair where the kernel and the model disagree, as readable lines."""
    from enforcer.analysis.matrix import diff, reachability
    from enforcer.analysis.service_matrix import service_reachability, service_routes
    from enforcer.lab import lab

    cluster = lab.model_state(state)
    problems = []
    for doc in docs:
        rows = list(doc["matrix"])
        if doc.get("via") == "service":
            # The model's matrix through Services, for the very Service each column used.
            routes = {
                dst: [r for r in via if r[0] == doc["services"][dst]]
                for dst, via in service_routes(
                    cluster, doc["port"], doc["protocol"], family
                ).items()
                if dst in doc["services"]
            }
            expected = service_reachability(
                cluster, doc["port"], doc["protocol"], family, sources=rows, routes=routes
            )
        else:
            expected = reachability(cluster, doc["port"], doc["protocol"], family, pods=rows)
        for src, dst, want, got in diff(expected, doc["matrix"]):
            problems.append(
                f"{doc['port']}/{doc['protocol']} {src} -> {dst}: model says "
                f"{'allowed' if want else 'denied'}, kernel {'allowed' if got else 'denied'}"
            )
    return problems


def run_probe(args: argparse.Namespace) -> int:
    from enforcer.analysis.table import render_table
    from enforcer.lab import lab

    try:
        state = lab.LabState.load(args.name)
        docs = probe_documents(state, args.port, args.protocol, args.family, args.timeout, args.via)
    except lab.LabError as exc:
        return _fail(exc)
    if args.output == "json":
        print(json.dumps(docs[0] if args.port else docs, indent=2))
    else:
        via = args.via == "service"
        print("\n\n".join(render_table(d["port"], d["protocol"], d["matrix"], via) for d in docs))
    if args.check:
        problems = check_documents(state, docs, args.family)
        for line in problems:
            print(f"MISMATCH {line}", file=sys.stderr)
        if problems:
            return 1
        print(f"check: kernel and model agree on all {len(docs)} matrices", file=sys.stderr)
    return 0


def run_exec(args: argparse.Namespace) -> int:
    from enforcer.lab import lab

    try:
        state = lab.LabState.load(args.name)
    except lab.LabError as exc:
        return _fail(exc)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.pod not in state.pods:
        return _fail(lab.LabError(f"no pod {args.pod} in lab {args.name}"))
    if not command:
        return _fail(lab.LabError("no command given (enforcer lab exec NS/POD -- COMMAND...)"))
    netns = state.pods[args.pod]["netns"]
    # nsenter, not `ip netns exec`: the latter remounts /sys, which is not needed here.
    os.execvp("nsenter", ["nsenter", f"--net=/run/netns/{netns}", *command])
    return 1  # not reached


def run_status(args: argparse.Namespace) -> int:
    from enforcer.commands.status import format_status
    from enforcer.lab import lab

    if not args.name:
        for name in lab.list_labs():
            print(name)
        return 0
    try:
        state = lab.LabState.load(args.name)
    except lab.LabError as exc:
        return _fail(exc)
    out: dict[str, Any] = {"name": state.name, "topology": state.topology,
                           "proxy_mode": state.proxy_mode, "console": state.console_url,
                           "nodes": {}}
    for node in state.node_nets():
        try:
            status = lab.node_status(state, node)
        except (OSError, RuntimeError) as exc:
            status = {"error": str(exc)}
        out["nodes"][node.name] = {"netns": node.netns, **status}
    if args.output == "json":
        print(json.dumps(out, indent=2))
        return 0
    print(f"lab {state.name}: {state.topology}, kube-proxy {state.proxy_mode}, "
          f"{len(state.nodes)} node(s), {len(state.pods)} pods")
    if state.console_url:
        print(f"console: {state.console_url}")
    print()
    print(_node_table(state))
    for name, status in out["nodes"].items():
        print()
        print(
            f"{name}: agent unreachable: {status['error']}"
            if "error" in status
            else format_status(status)
        )
    return 0


def _node_table(state: Any) -> str:
    """Each node's network namespace and pod subnets (what `ip netns exec` and
    `monitor --netns` take)."""
    rows = [("NODE", "NETNS", "POD SUBNETS", "PODS")]
    for node in state.node_nets():
        pods = sum(p["node"] == node.name for p in state.pods.values())
        subnets = f"{node.subnet_v4},{node.subnet_v6}" if state.ipv6 else str(node.subnet_v4)
        rows.append((node.name, node.netns, subnets, str(pods)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def run_monitor(args: argparse.Namespace) -> int:
    """`monitor` against the lab's node agents (each node's API socket), merged."""
    from enforcer.commands.flows import merged
    from enforcer.commands.status import print_events
    from enforcer.lab import lab

    try:
        state = lab.LabState.load(args.name)
        agents = lab.agent_endpoints(state)
        if args.node and args.node not in agents:
            raise lab.LabError(
                f"no node {args.node!r} in lab {args.name} (its nodes: {', '.join(agents)})"
            )
        chosen = [a for name, a in agents.items() if args.node in (None, name)]
        for agent in chosen:  # up front: a stream that cannot connect would wait forever
            _reachable(agent, args.name)
    except lab.LabError as exc:
        return _fail(exc)
    try:
        print_events(merged([a.stream("/events") for a in chosen], follow=True), args)
    except (OSError, RuntimeError) as exc:
        return _fail(RuntimeError(f"reading the lab's agents: {exc}"))
    return 0


def _reachable(agent: Any, lab_name: str) -> None:
    from enforcer.lab import lab

    try:
        agent.get_json("/status", timeout=2.0)
    except (OSError, RuntimeError) as exc:
        raise lab.LabError(
            f"the agent of node {agent} is not reachable: {exc} "
            f"(`enforcer lab status --name {lab_name}`)"
        ) from None


def lab_flows(state: Any, path: str, follow: bool) -> Any:
    """Every node agent's answer to one /flows query, merged (see commands.flows.merged)."""
    from enforcer.commands.flows import merged
    from enforcer.lab import lab

    streams = [agent.stream(path) for agent in lab.agent_endpoints(state).values()]
    return merged(streams, follow)


def run_flows(args: argparse.Namespace) -> int:
    from enforcer.commands.flows import print_records, query_path
    from enforcer.lab import lab

    try:
        state = lab.LabState.load(args.name)
        path = query_path(args)
    except (lab.LabError, ValueError) as exc:
        return _fail(exc)
    try:
        print_records(lab_flows(state, path, args.follow), args.output, args.wide, args.follow)
    except (OSError, RuntimeError) as exc:
        return _fail(RuntimeError(f"reading the lab's agents: {exc}"))
    return 0


def run_down(args: argparse.Namespace) -> int:
    from enforcer.lab import lab

    names = lab.list_labs() if args.all else [args.name] if args.name else []
    if not names and not args.all:
        return _fail(lab.LabError("give --name NAME or --all"))
    if args.name and not args.all and args.name not in lab.list_labs():
        return _fail(lab.LabError(f"no lab named {args.name!r} (`enforcer lab status` lists them)"))
    for name in names:
        lab.down(name, _progress)
    return 0
