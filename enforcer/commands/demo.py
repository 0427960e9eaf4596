"""`enforcer demo`: the three-tier application in a lab, before and after its policies."""

from __future__ import annotations

import argparse
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "three-tier"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="live demo: a three-tier app in a lab, before and after its policies (root)",
    )
    p.add_argument("--examples", type=Path, default=EXAMPLES, help="folder with the manifests")
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--topology", choices=["routed", "bridged"], default="routed")
    p.add_argument("--keep", action="store_true", help="leave the lab running afterwards")
    p.set_defaults(func=run)


def _say(text: str = "") -> None:
    print(text, flush=True)


def _collect_drops(state: Any, into: list[dict[str, Any]], stop: threading.Event) -> None:
    from enforcer.agentclient import stream_events
    from enforcer.lab.lab import AGENT_ADDR

    def follow(netns: str) -> None:
        try:
            for ev in stream_events(AGENT_ADDR, netns):
                if stop.is_set():
                    return
                into.append(ev)
        except OSError:
            return

    for node in state.node_nets():
        threading.Thread(target=follow, args=(node.netns,), daemon=True).start()


def _drop_metrics(state: Any) -> list[str]:
    from enforcer.agentclient import get_text
    from enforcer.lab.lab import AGENT_ADDR

    lines = []
    for node in state.node_nets():
        _, text = get_text(AGENT_ADDR, "/metrics", netns=node.netns)
        lines += [
            f"{node.name}: {line}"
            for line in text.splitlines()
            if line.startswith("enforcer_drop_count_total{") and not line.endswith(" 0.0")
        ]
    return lines


def run(args: argparse.Namespace) -> int:
    from enforcer.analysis.table import render_table
    from enforcer.commands.lab import check_documents, probe_documents
    from enforcer.commands.status import format_event
    from enforcer.lab import lab

    cluster = args.examples / "cluster.yaml"
    policies = args.examples / "policies.yaml"
    for path in (cluster, policies):
        if not path.exists():
            print(f"error: {path} not found", file=sys.stderr)
            return 2
    name = f"demo-{secrets.token_hex(2)}"
    _say(f"== enforcer demo: lab {name}, {args.nodes} node(s), {args.topology} topology")
    try:
        t0 = time.monotonic()
        state = lab.up([cluster], name, args.topology, args.nodes, progress=_say)
        _say(f"   lab up and enforced in {time.monotonic() - t0:.1f} s")
        _say("\n== 1. No policies: every pod reaches every pod\n")
        for doc in probe_documents(state, None, None, 4, 1.0):
            _say(render_table(doc["port"], doc["protocol"], doc["matrix"]) + "\n")

        _say(f"== 2. Applying {policies.name}: default deny + the allowed paths")
        took = lab.apply(state, [policies])
        _say(f"   enforced on every node {took * 1000:.0f} ms after the files were written\n")
        drops: list[dict[str, Any]] = []
        stop = threading.Event()
        _collect_drops(state, drops, stop)
        time.sleep(0.2)  # let the event streams connect before the probes start
        docs = probe_documents(state, None, None, 4, 1.0)
        for doc in docs:
            _say(render_table(doc["port"], doc["protocol"], doc["matrix"]) + "\n")
        problems = check_documents(state, docs, 4)
        if problems:
            _say("!! the kernel and the model disagree:")
            for line in problems:
                _say(f"   {line}")
        else:
            _say("   the kernel's verdicts match `enforcer analyze` on every pair")
        time.sleep(0.5)
        stop.set()

        _say("\n== 3. What the denied probes caused (as `enforcer monitor` shows them)\n")
        for ev in drops[:15]:
            _say("   " + format_event(ev))
        if len(drops) > 15:
            _say(f"   ... and {len(drops) - 15} more")
        _say("\n== 4. The same drops as the metrics endpoint reports them\n")
        for line in _drop_metrics(state):
            _say("   " + line)
        return 1 if problems else 0
    except lab.LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            lab.down(name, _say)
