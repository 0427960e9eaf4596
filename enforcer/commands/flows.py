"""`enforcer flows` (like `hubble observe`): a running agent's flows with their verdicts and the
policies that decided them; `enforcer lab flows` reads every node of a lab.

Filters follow Hubble: a repeated flag ORs its values, different flags AND."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Iterator
from urllib.parse import urlencode

LAST_DEFAULT = 100


def add_filter_args(p: argparse.ArgumentParser) -> None:
    """The flags `flows` and `lab flows` share."""
    f = p.add_argument_group("filters (a repeated flag ORs its values; different flags AND)")
    f.add_argument("--namespace", "-n", action="append", default=[], metavar="NS",
                   help="flows with an end in this namespace")
    f.add_argument("--pod", action="append", default=[], metavar="NS/POD",
                   help="flows with this pod at either end")
    f.add_argument("--from", dest="from_", action="append", default=[], metavar="PEER",
                   help="flows from NS/POD, from any pod of NS/, or from an address")
    f.add_argument("--to", action="append", default=[], metavar="PEER",
                   help="flows to NS/POD, to any pod of NS/, or to an address")
    f.add_argument("--port", action="append", default=[], metavar="PORT",
                   help="destination port")
    f.add_argument("--protocol", action="append", default=[], metavar="PROTO",
                   help="TCP, UDP, SCTP, ICMP, ICMPv6")
    f.add_argument("--verdict", action="append", default=[],
                   choices=["allowed", "denied", "audit", "would-deny", "would-allow"],
                   help="would-deny, would-allow: what the staged policies would change")
    f.add_argument("--policy", action="append", default=[], metavar="NS/NAME",
                   help="flows this policy decided (or would decide, staged)")
    f.add_argument("--direction", action="append", default=[], choices=["ingress", "egress"],
                   help="the side that judged: the source's egress or the destination's "
                   "ingress")
    p.add_argument("--since", default=None, metavar="WHEN",
                   help="only flows seen since: a duration (30s, 5m, 2h, 1d) or an RFC 3339 time")
    p.add_argument("--last", type=int, default=None, metavar="N",
                   help=f"the newest N flows (default {LAST_DEFAULT}; 0: all the agent has)")
    p.add_argument("--follow", "-f", action="store_true",
                   help="then keep printing flows as they come")
    p.add_argument("--output", "-o", choices=["table", "json"], default="table",
                   help="table, or json: one object per line")
    p.add_argument("--wide", action="store_true", help="table: also node and addresses")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "flows",
        help="flows a running agent saw, with their verdicts and deciding policies",
        description="Query (or --follow) the agent's flow store: each new flow with the side "
        "that judged it, its verdict (allowed, denied, audit) and why: the rules that allowed "
        "it, or the policies that isolate the pod it was denied at.",
    )
    from enforcer.commands.status import add_agent_args

    add_agent_args(p)
    add_filter_args(p)
    p.set_defaults(func=run)


def query_path(args: argparse.Namespace, now: float | None = None) -> str:
    """/flows?... for the agent; raises ValueError naming a bad flag value."""
    from enforcer.flows.filters import FlowFilter, parse_since

    flt = FlowFilter(
        namespaces=tuple(args.namespace), pods=tuple(args.pod), from_pods=tuple(args.from_),
        to_pods=tuple(args.to), ports=tuple(_port(p) for p in args.port),
        protocols=tuple(args.protocol), verdicts=tuple(args.verdict),
        policies=tuple(args.policy), directions=tuple(args.direction),
    )
    params = list(flt.to_query())
    if args.since:
        params.append(("since", str(parse_since(args.since, now or time.time()))))
    last = LAST_DEFAULT if args.last is None else args.last
    if last < 0:
        raise ValueError(f"--last: must be 0 or more, got {last}")
    if last:
        params.append(("limit", str(last)))
    if args.follow:
        params.append(("follow", "1"))
    return "/flows" + ("?" + urlencode(params) if params else "")


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"--port: not a port number: {text!r}")
    return int(text)


def print_records(lines: Iterable[dict[str, object]], output: str, wide: bool,
                  follow: bool) -> None:
    """The records as they come: JSON lines, or a table (aligned over the query's answer,
    then one line per record when following)."""
    from enforcer.flows.record import parse_record
    from enforcer.flows.render import table

    if output == "json":
        import json

        for doc in lines:
            print(json.dumps(doc, sort_keys=True), flush=True)
        return
    if not follow:
        print(table([parse_record(d) for d in lines], wide=wide))
        return
    header = True
    for doc in lines:
        text = table([parse_record(doc)], wide=wide)
        print(text if header else text.split("\n", 1)[-1], flush=True)
        header = False


def run(args: argparse.Namespace) -> int:
    from enforcer.commands.status import agent_of, unreachable

    try:
        path = query_path(args)
        agent = agent_of(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        print_records(agent.stream(path), args.output, args.wide, args.follow)
    except OSError as exc:
        print(f"error: {unreachable(args, exc)}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        print(f"error: the agent refused the query: {exc}", file=sys.stderr)
        return 2
    return 0


def merged(streams: list[Iterator[dict[str, object]]], follow: bool) -> Iterator[dict[str, object]]:
    """Several agents' answers as one: the queries' records by last seen, then (following)
    each new record as any agent sends it."""
    import queue
    import threading

    if not follow:
        docs = [d for s in streams for d in s]
        yield from sorted(docs, key=lambda d: str(d.get("last_seen", "")))
        return
    q: queue.Queue[dict[str, object] | BaseException] = queue.Queue()

    def pump(stream: Iterator[dict[str, object]]) -> None:
        try:
            for doc in stream:
                q.put(doc)
        except BaseException as exc:  # a node gone: the others go on
            q.put(exc)

    for s in streams:
        threading.Thread(target=pump, args=(s,), daemon=True).start()
    while True:
        item = q.get()
        if isinstance(item, BaseException):
            print(f"warning: {item}", file=sys.stderr)
            continue
        yield item
