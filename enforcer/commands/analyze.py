"""`enforcer analyze`: the reachability matrix between all pods of some manifests, or recorded
flows replayed against them (`--flows`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from enforcer.analysis.explain import explain_document, explain_text
from enforcer.analysis.html_report import pod_explainer, render_html, service_explainer
from enforcer.analysis.inputs import (
    EXIT_INVALID_INPUT,
    load_for_command,
    planned_state,
    unread,
)
from enforcer.analysis.matrix import (
    declared_ports,
    matrix_document,
    reachability,
    render_json,
)
from enforcer.analysis.service_matrix import declared_service_ports, service_document
from enforcer.analysis.table import render_columns, render_table
from enforcer.commands.reading import accept_groups, add_accept_group, add_allow_ignored
from enforcer.flows.record import FlowFormatError, read_lines
from enforcer.flows.replay import Replayed, Unresolvable, replay
from enforcer.model.cluster import ClusterState
from enforcer.model.loader import LoadResult
from enforcer.model.objects import PROTOCOLS
from enforcer.model.staged import as_if_applied

FLOW_COLUMNS = ("SOURCE", "DESTINATION", "PORT", "PROTOCOL", "VERDICT", "POLICIES", "REASON")
EXIT_WOULD_DENY = 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "analyze",
        help="reachability matrix of pods under NetworkPolicies (no cluster needed)",
        description=(
            "Print which pods may open connections to which. Without --port, every port any "
            "pod declares is analyzed (JSON: a list of matrix objects, table: one per port). "
            "With --flows, replay recorded flows instead: which would the manifests deny, and "
            "why. StagedNetworkPolicies are read but count only with --staged. Objects nothing "
            "reads (other kinds, another group's NetworkPolicy) and files without objects are "
            "named on stderr and make the exit 2 (after the output) unless --allow-ignored."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="FILE_OR_DIR", help="manifests (YAML or JSON)")
    p.add_argument("--port", type=int, help="destination port (default: every declared port)")
    p.add_argument("--protocol", choices=PROTOCOLS, default=None, help="default TCP with --port")
    p.add_argument(
        "--output",
        choices=["table", "json", "html"],
        default="table",
        help="html: one self-contained page of the matrices, each cell's --explain on hover",
    )
    p.add_argument(
        "--via",
        choices=["pod", "service"],
        default="pod",
        help="service: connect to each pod through the Services that front it (--port is then "
        "the Service port; verdicts are on each backend's target port)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail (exit 2) on any invalid object, and with --flows on the first bad or "
        "unresolvable line",
    )
    p.add_argument(
        "--staged",
        action="store_true",
        help="judge as if the StagedNetworkPolicies in the manifests were applied",
    )
    p.add_argument(
        "--flows",
        metavar="FLOWS.jsonl",
        help="replay recorded flows (the JSON lines of `enforcer flows`; - reads stdin) and "
        "report which the manifests would deny",
    )
    p.add_argument(
        "--fail-on-deny",
        action="store_true",
        help="with --flows: exit 1 when the manifests would deny any replayed flow",
    )
    p.add_argument(
        "--explain",
        nargs=2,
        metavar=("FROM", "TO"),
        help="say which policies and rules allow or deny FROM -> TO (namespace/pod or an IP)",
    )
    add_accept_group(p)
    add_allow_ignored(p)
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


def _usage_error(args: argparse.Namespace) -> str | None:
    if args.fail_on_deny and not args.flows:
        return "--fail-on-deny needs --flows"
    if args.output == "html" and (args.flows or args.explain):
        return "--output html renders the matrix (with every cell's explanation): drop " + (
            "--flows" if args.flows else "--explain"
        )
    if args.flows:
        clash = [
            flag
            for flag, given in (
                ("--port", args.port is not None),
                ("--protocol", args.protocol is not None),
                ("--via", args.via != "pod"),
                ("--explain", bool(args.explain)),
            )
            if given
        ]
        if clash:
            return f"--flows replays each flow's own port and ends: drop {', '.join(clash)}"
    return None


def run(args: argparse.Namespace) -> int:
    groups = accept_groups(args)
    problem = groups if isinstance(groups, str) else _usage_error(args)
    if problem or isinstance(groups, str):
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    result, ok = load_for_command(args.paths, args.strict, accept_groups=groups,
                                  allow_ignored=args.allow_ignored)
    if not ok:
        return EXIT_INVALID_INPUT
    code = _analyze(args, result)
    if code == 0 and unread(result) and not args.allow_ignored:
        return EXIT_INVALID_INPUT  # named on stderr by load_for_command
    return code


def _analyze(args: argparse.Namespace, result: LoadResult) -> int:
    state = planned_state(result)
    if args.staged:
        state = as_if_applied(state, result.staged)
    elif result.staged:
        print(
            f"note: {len(result.staged)} StagedNetworkPolicy object(s) not applied "
            "(--staged judges as if they were)",
            file=sys.stderr,
        )
    skipped = sorted(k for k, pod in state.pods.items() if not state.is_endpoint(pod))
    if skipped:
        print(
            "note: not endpoints (hostNetwork, Succeeded or Failed), left out: "
            + ", ".join(skipped),
            file=sys.stderr,
        )
    if args.flows:
        return _replay_flows(args, state)
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
    elif args.output == "html":
        explainer = service_explainer if args.via == "service" else pod_explainer
        notes = ["StagedNetworkPolicies judged as if applied (--staged)"] if args.staged else []
        explainers = [explainer(state, p, proto) for p, proto in ports]
        print(render_html(docs, explainers, args.paths, notes))
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


def _replay_flows(args: argparse.Namespace, state: ClusterState) -> int:
    origin = "<stdin>" if args.flows == "-" else args.flows
    try:
        lines = _flow_lines(args.flows)
        flows = read_lines(lines, origin, strict=args.strict)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        print(f"error: {origin}: cannot read: {reason}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    except FlowFormatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    for error in flows.errors:
        print(f"warning: {error} (line skipped)", file=sys.stderr)
    replayed = []
    for number, record in zip(_record_lines(lines, flows.errors), flows.records, strict=True):
        try:
            replayed.append(replay(state, record))
        except Unresolvable as exc:
            if args.strict:
                print(f"error: {origin}:{number}: {exc}", file=sys.stderr)
                return EXIT_INVALID_INPUT
            print(f"warning: {origin}:{number}: {exc} (line skipped)", file=sys.stderr)
    if args.output == "json":
        print(json.dumps({"flows": [r.to_json() for r in replayed]}, indent=2))
    else:
        print(_flows_table(replayed))
    if args.fail_on_deny and any(not r.allowed for r in replayed):
        return EXIT_WOULD_DENY
    return 0


def _flow_lines(path: str) -> list[str]:
    if path == "-":
        return sys.stdin.readlines()
    with open(path, encoding="utf-8") as f:
        return f.readlines()


def _record_lines(lines: Sequence[str], errors: Sequence[FlowFormatError]) -> list[int]:
    """The line number of each record read_lines returned: it keeps the order and skips blank
    and bad lines, so the records are the remaining lines, in order."""
    bad = {e.line for e in errors}
    return [n for n, text in enumerate(lines, start=1) if text.strip() and n not in bad]


def _flows_table(replayed: Sequence[Replayed]) -> str:
    if not replayed:
        return "(no flows)"
    rows = [_flow_row(r) for r in replayed]
    denied = sum(not r.allowed for r in replayed)
    return f"{render_columns(FLOW_COLUMNS, rows)}\n{len(replayed)} flow(s): {denied} denied"


def _flow_row(r: Replayed) -> list[str]:
    return [
        r.record.source,
        r.record.destination,
        str(r.record.port),
        r.record.protocol,
        "allowed" if r.allowed else "denied",
        ",".join(r.policies) or "<none>",
        r.reason,
    ]
