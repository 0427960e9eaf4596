"""`enforcer analyze`: the reachability matrix between all pods of some manifests."""

from __future__ import annotations

import argparse
import sys

from enforcer.analysis.explain import explain_document, explain_text
from enforcer.analysis.inputs import EXIT_INVALID_INPUT, load_for_command, planned_state
from enforcer.analysis.matrix import (
    declared_ports,
    matrix_document,
    reachability,
    render_json,
)
from enforcer.analysis.service_matrix import declared_service_ports, service_document
from enforcer.analysis.table import render_table
from enforcer.model.cluster import ClusterState
from enforcer.model.objects import PROTOCOLS


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "analyze",
        help="reachability matrix of pods under NetworkPolicies (no cluster needed)",
        description=(
            "Print which pods may open connections to which. Without --port, every port any "
            "pod declares is analyzed (JSON: a list of matrix objects, table: one per port)."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="FILE_OR_DIR", help="manifests (YAML or JSON)")
    p.add_argument("--port", type=int, help="destination port (default: every declared port)")
    p.add_argument("--protocol", choices=PROTOCOLS, default=None, help="default TCP with --port")
    p.add_argument("--output", choices=["table", "json"], default="table")
    p.add_argument(
        "--via",
        choices=["pod", "service"],
        default="pod",
        help="service: connect to each pod through the Services that front it (--port is then "
        "the Service port; verdicts are on each backend's target port)",
    )
    p.add_argument("--strict", action="store_true", help="fail (exit 2) on any invalid object")
    p.add_argument(
        "--explain",
        nargs=2,
        metavar=("FROM", "TO"),
        help="say which policies and rules allow or deny FROM -> TO (namespace/pod or an IP)",
    )
    p.set_defaults(func=run)


def _ports(args: argparse.Namespace, state: ClusterState) -> list[tuple[int, str]] | None:
    if args.port is not None:
        if not 1 <= args.port <= 65535:
            print(f"error: --port {args.port} out of range 1-65535", file=sys.stderr)
            return None
        return [(args.port, args.protocol or "TCP")]
    if args.via == "service":
        return declared_service_ports(state, args.protocol)
    return declared_ports(state, args.protocol)


def run(args: argparse.Namespace) -> int:
    result, ok = load_for_command(args.paths, args.strict)
    if not ok:
        return EXIT_INVALID_INPUT
    state = planned_state(result)
    skipped = sorted(k for k, pod in state.pods.items() if not state.is_endpoint(pod))
    if skipped:
        print(
            "note: not endpoints (hostNetwork, Succeeded or Failed), left out: "
            + ", ".join(skipped),
            file=sys.stderr,
        )
    if args.explain:
        return _explain(args, state)
    ports = _ports(args, state)
    if ports is None:
        return EXIT_INVALID_INPUT
    if not ports:
        what = "Service" if args.via == "service" else "pod"
        print(f"error: no {what} declares a port; pass --port", file=sys.stderr)
        return EXIT_INVALID_INPUT
    if args.via == "service":
        docs = [service_document(state, p, proto) for p, proto in ports]
    else:
        docs = [matrix_document(p, proto, reachability(state, p, proto)) for p, proto in ports]
    if args.output == "json":
        print(render_json(docs[0] if args.port is not None else docs))
    else:
        via = args.via == "service"
        print("\n\n".join(render_table(d["port"], d["protocol"], d["matrix"], via) for d in docs))
    return 0


def _explain(args: argparse.Namespace, state: ClusterState) -> int:
    src, dst = args.explain
    if args.port is not None:
        ports = [(args.port, args.protocol or "TCP")]
    elif dst in state.pods:
        ports = sorted(
            {(p.port, p.protocol) for p in state.pods[dst].ports}
            if args.protocol is None
            else {
                (p.port, p.protocol) for p in state.pods[dst].ports if p.protocol == args.protocol
            }
        )
    else:
        ports = []
    if not ports:
        print(f"error: {dst} declares no port; pass --port", file=sys.stderr)
        return EXIT_INVALID_INPUT
    try:
        if args.output == "json":
            docs = [explain_document(state, src, dst, p, proto) for p, proto in ports]
            print(render_json(docs[0] if args.port is not None else docs))
        else:
            print("\n".join(explain_text(state, src, dst, p, proto) for p, proto in ports))
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    return 0
