"""`enforcer status` and `enforcer monitor`: read a running agent's endpoints and drop stream."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from typing import Any

from enforcer.agentclient import DEFAULT_AGENT, AgentEndpoint, endpoint


def add_agent_args(p: argparse.ArgumentParser) -> None:
    """How the CLI reaches an agent (status, monitor, flows)."""
    p.add_argument(
        "--agent", default=DEFAULT_AGENT,
        help=f"unix:PATH, the agent's socket on this node (default {DEFAULT_AGENT}; in a "
        "cluster: kubectl exec into the agent's pod), or HOST:PORT with --token-file",
    )
    p.add_argument("--token-file", default=None,
                   help="a service-account token allowed to read the agent (with HOST:PORT)")
    p.add_argument("--netns", default=None, help="reach HOST:PORT inside this network namespace")


def agent_of(args: argparse.Namespace) -> AgentEndpoint:
    """--agent, --netns and --token-file as an endpoint; ValueError names what is wrong."""
    return endpoint(args.agent, args.netns, args.token_file)


def unreachable(args: argparse.Namespace, exc: OSError) -> str:
    """One line: which agent could not be reached, why, and where to look."""
    reason = exc.strerror or str(exc)
    if args.agent.startswith("unix:"):
        hint = (
            "is an agent running on this node with that --api-socket? (a lab's agents: "
            "`enforcer lab monitor|flows --name LAB`)"
        )
    else:
        hint = "is an agent listening there?"
    where = f" in network namespace {args.netns}" if args.netns else ""
    return f"cannot reach the agent at {args.agent}{where}: {reason}: {hint}"


def _agent_args(p: argparse.ArgumentParser) -> None:
    add_agent_args(p)
    p.add_argument("--output", choices=["table", "json"], default="table")


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("status", help="list the local endpoints a running agent enforces")
    _agent_args(s)
    s.set_defaults(func=run_status)
    m = sub.add_parser("monitor", help="stream drop events from a running agent")
    _agent_args(m)
    add_monitor_args(m)
    m.set_defaults(func=run_monitor)


def add_monitor_args(m: argparse.ArgumentParser) -> None:
    """The event filters of monitor and lab monitor."""
    m.add_argument(
        "--pod", default=None, help="only events whose pod, source or destination is NS/POD"
    )
    m.add_argument("--namespace", default=None, help="only events touching this namespace")
    m.add_argument("--reason", default=None, help="only this drop reason (e.g. policy_denied)")
    m.add_argument("--direction", choices=["ingress", "egress"], default=None)
    m.add_argument("--count", type=int, default=0, help="stop after this many events (0: never)")


def _isolation(ep: dict[str, Any]) -> str:
    parts = [
        name for name, on in (("in", ep["ingress_isolated"]), ("eg", ep["egress_isolated"])) if on
    ]
    return ",".join(parts) or "-"


def format_status(status: dict[str, Any]) -> str:
    head = (
        f"node {status.get('node') or '-'}  ready={status['ready']}  source={status['source']}"
        f"  map_full={status['map_full']}"
    )
    rows = [("POD", "IFINDEX", "IPS", "ISOLATED", "ENTRIES", "GEN", "POLICIES")]
    for ep in status["endpoints"]:
        rows.append(
            (
                ep["pod"],
                str(ep["ifindex"] if ep["ifindex"] is not None else "-"),
                ",".join(ep["ips"]) or "-",
                _isolation(ep),
                str(ep["entries"]),
                str(ep["generation"]),
                ",".join(ep["policies"]) or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [head] + ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    for fault in status.get("faults", []):  # what the node lacks: the agent is not ready
        lines.append(f"fault: {fault['message']}")
    for err in status.get("invalid_objects", []):
        lines.append(f"invalid: {err}")
    for q in status.get("quarantined", []):  # isolated completely (enforcer quarantine)
        auto = q.get("auto")
        how = (f"automatically ({auto['trigger']}; API: {auto['api']})" if auto
               else "by this agent alone (API not written yet)" if q.get("by") == "agent"
               else "by its annotation")
        lines.append(f"quarantined: {q['pod']} {how}: {q['reason'] or '(no reason given)'}")
    if staged := status.get("staged_policies"):
        lines.append(f"staged (flows judged, never enforced): {', '.join(staged)}")
    return "\n".join(line.rstrip() for line in lines)


def run_status(args: argparse.Namespace) -> int:
    try:
        status = agent_of(args).get_json("/status")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {unreachable(args, exc)}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        print(f"error: the agent refused: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(status, indent=2) if args.output == "json" else format_status(status))
    return 0


def event_matches(ev: dict[str, Any], args: argparse.Namespace) -> bool:
    pods = {ev.get("pod"), ev.get("src_pod"), ev.get("dst_pod")} - {None}
    if args.pod and args.pod not in pods:
        return False
    if args.namespace and not any(p.split("/")[0] == args.namespace for p in pods):
        return False
    if args.reason and ev.get("reason") != args.reason:
        return False
    return not (args.direction and ev.get("direction") != args.direction)


PROTO_NAMES = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6", 132: "SCTP"}


def format_event(ev: dict[str, Any]) -> str:
    proto = PROTO_NAMES.get(ev["protocol"], str(ev["protocol"]))
    src = f"{ev.get('src_pod') or ev['src']}:{ev['src_port']}"
    dst = f"{ev.get('dst_pod') or ev['dst']}:{ev['dst_port']}"
    return (
        f"DROP {ev['reason']:<18} {ev['direction']:<7} {proto:<6} {src} -> {dst}"
        f"  (at {ev.get('pod') or '?'} on {ev.get('node') or '-'})"
    )


def print_events(events: Iterable[dict[str, Any]], args: argparse.Namespace) -> None:
    """The events that pass monitor's filters, as lines, until --count of them."""
    seen = 0
    for ev in events:
        if not event_matches(ev, args):
            continue
        print(json.dumps(ev, sort_keys=True) if args.output == "json" else format_event(ev))
        sys.stdout.flush()
        seen += 1
        if args.count and seen >= args.count:
            break


def run_monitor(args: argparse.Namespace) -> int:
    try:
        print_events(agent_of(args).stream("/events"), args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {unreachable(args, exc)}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        print(f"error: the agent refused: {exc}", file=sys.stderr)
        return 1
    return 0
