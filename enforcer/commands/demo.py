"""`enforcer demo`: the three-tier application in a lab, before and after its policies; then
what it saw (the flow log, with why), a staged policy's preview, and policies advised from
the app's own traffic. Each step prints the commands a user would type for it."""

from __future__ import annotations

import argparse
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "three-tier"
STAGED = Path(__file__).resolve().parents[2] / "examples" / "staged" / "dns-udp-only.yaml"
# The app's traffic: (source, destination, port, protocol). DNS is a datagram to the DNS pod's
# port 53 (the lab's pods echo it); a real resolver would also fall back to TCP 53.
APP_TRAFFIC = (
    ("frontend/web", "kube-system/coredns", 53, "UDP"),
    ("frontend/web", "backend/api", 8080, "TCP"),
    ("backend/api", "kube-system/coredns", 53, "UDP"),
    ("backend/api", "database/postgres", 5432, "TCP"),
)
# What the app must never do: the frontend straight to the database.
FORBIDDEN = ("frontend/web", "database/postgres", 5432, "TCP")
# The DNS fallback to TCP, which the staged policy would break.
DNS_OVER_TCP = ("frontend/web", "kube-system/coredns", 53, "TCP")
PROBE_TIMEOUT = 0.5


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


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _cmd(text: str) -> None:
    """A command the user would type for this step."""
    _say(f"   $ {text}")


def _connect(state: Any, flow: tuple[str, str, int, str]) -> bool:
    """One new connection (TCP) or datagram exchange (UDP) with real sockets."""
    from enforcer.lab import lab
    from enforcer.lab.probe import probe_pair

    ends = {e.key: e for e in lab.probe_endpoints(state)}
    src, dst, port, protocol = flow
    return probe_pair(ends[src], ends[dst], port, protocol, PROBE_TIMEOUT)


def _run_app(state: Any, flows: tuple[tuple[str, str, int, str], ...]) -> None:
    for flow in flows:
        src, dst, port, protocol = flow
        ok = _connect(state, flow)
        _say(f"   {src} -> {dst} {port}/{protocol}: {'ok' if ok else 'refused'}")


def _flows_since(state: Any, since: float, *params: tuple[str, str]) -> list[Any]:
    """Every node's flow records seen since `since` (unix seconds), as `lab flows` reads them."""
    from urllib.parse import urlencode

    from enforcer.commands.lab import lab_flows
    from enforcer.flows.record import parse_record

    time.sleep(0.5)  # events reach the agents' stores within well under a second
    query = urlencode([("since", str(since)), ("limit", "0"), *params])
    return [parse_record(d) for d in lab_flows(state, f"/flows?{query}", follow=False)]


def _drops_total(state: Any) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in _drop_metrics(state))


def _collect_drops(state: Any, into: list[dict[str, Any]], stop: threading.Event) -> None:
    from enforcer.agentclient import AgentEndpoint
    from enforcer.lab.lab import agent_endpoints

    def follow(agent: AgentEndpoint) -> None:
        try:
            for ev in agent.stream("/events"):
                if stop.is_set():
                    return
                into.append(ev)
        except OSError:
            return

    for agent in agent_endpoints(state).values():
        threading.Thread(target=follow, args=(agent,), daemon=True).start()


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
    from enforcer.lab import lab

    cluster = args.examples / "cluster.yaml"
    policies = args.examples / "policies.yaml"
    for path in (cluster, policies, STAGED):
        if not path.exists():
            print(f"error: {path} not found", file=sys.stderr)
            return 2
    name = f"demo-{secrets.token_hex(2)}"
    _say(f"== enforcer demo: lab {name}, {args.nodes} node(s), {args.topology} topology")
    _cmd(f"enforcer lab up {_shown(cluster)} --name {name} --nodes {args.nodes} "
         f"--topology {args.topology}")
    work = Path(tempfile.mkdtemp(prefix="enforcer-demo-"))
    try:
        t0 = time.monotonic()
        state = lab.up([cluster], name, args.topology, args.nodes, progress=_say)
        _say(f"   lab up and enforced in {time.monotonic() - t0:.1f} s")
        _say(f"   the console, while the lab runs: {state.console_url}")
        app_flows = _app_before_policies(state, work)
        problems = _before_and_after(state, policies)
        _flow_log(state)
        _staged_preview(state)
        problems += _advise(state, app_flows, policies, work)
        return 1 if problems else 0
    except lab.LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            lab.down(name, _say)
        for path in work.iterdir():
            path.unlink()
        work.rmdir()


def _app_before_policies(state: Any, work: Path) -> Path:
    """The app's own traffic with no policy in place, saved as flow records for `advise`."""
    _say("\n== 1. The app at work, no policies yet: web -> api, api -> postgres, both use DNS\n")
    since = time.time()
    _run_app(state, APP_TRAFFIC)
    path = work / "app-flows.jsonl"
    records = _flows_since(state, since)
    path.write_text("".join(r.to_line() + "\n" for r in records))
    _say("\n   what the agents recorded, saved for step 8 (advise learns from it):")
    _cmd(f"enforcer lab flows --name {state.name} --last 0 -o json > {path.name}")
    _say(f"   {len(records)} flow records (each flow at the source's egress and the "
         "destination's ingress)")
    return path


def _before_and_after(state: Any, policies: Path) -> list[str]:
    from enforcer.analysis.table import render_table
    from enforcer.commands.lab import check_documents, probe_documents
    from enforcer.commands.status import format_event
    from enforcer.lab import lab

    _say("\n== 2. No policies: every pod reaches every pod\n")
    _cmd(f"enforcer lab probe --name {state.name}")
    _say()
    for doc in probe_documents(state, None, None, 4, 1.0):
        _say(render_table(doc["port"], doc["protocol"], doc["matrix"]) + "\n")

    _say(f"== 3. Applying {policies.name}: default deny + the allowed paths")
    _cmd(f"enforcer lab apply --name {state.name} {_shown(policies)}")
    _cmd(f"enforcer lab probe --name {state.name} --check")
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

    _say("\n== 4. What the denied probes caused (as `enforcer monitor` shows them)\n")
    node = state.node_nets()[0]
    _cmd(f"enforcer monitor --netns {node.netns}   # one node's agent")
    for ev in drops[:15]:
        _say("   " + format_event(ev))
    if len(drops) > 15:
        _say(f"   ... and {len(drops) - 15} more")
    _say("\n== 5. The same drops as the metrics endpoint reports them\n")
    _cmd(f"ip netns exec {node.netns} curl -s {lab.AGENT_ADDR}/metrics "
         "| grep enforcer_drop_count_total")
    for line in _drop_metrics(state):
        _say("   " + line)
    return problems


def _flow_log(state: Any) -> None:
    """The app's traffic under its policies, and one forbidden attempt, with the verdicts and
    the policies that decided them."""
    from enforcer.flows.render import table

    _say("\n== 6. The flow log: the app under its policies, and the frontend trying the "
         "database\n")
    since = time.time()
    _run_app(state, (*APP_TRAFFIC, FORBIDDEN))
    _say()
    _cmd(f"enforcer lab flows --name {state.name} --since 10s")
    _say()
    records = sorted(_flows_since(state, since),
                     key=lambda r: (r.verdict != "denied", r.source, r.destination, r.direction))
    for line in table(records).splitlines():
        _say("   " + line)


def _staged_preview(state: Any) -> None:
    """A StagedNetworkPolicy is judged, never enforced: what it would deny still passes."""
    from enforcer.flows.render import table
    from enforcer.lab import lab

    _say(f"\n== 7. A staged policy: {STAGED.name} narrows frontend's DNS to UDP only\n")
    _cmd(f"enforcer lab apply --name {state.name} {_shown(STAGED)}")
    lab.apply(state, [STAGED])
    before = _drops_total(state)
    since = time.time()
    _run_app(state, (APP_TRAFFIC[0], DNS_OVER_TCP))
    _say()
    _cmd(f"enforcer lab flows --name {state.name} --verdict would-deny --since 10s")
    _say()
    records = _flows_since(state, since, ("verdict", "would-deny"))
    for line in table(records).splitlines():
        _say("   " + line)
    dropped = _drops_total(state) - before
    _say(f"\n   packets dropped meanwhile: {dropped:.0f} (staged policies never drop: the "
         "TCP lookup went through, and would break once this policy is applied)")
    lab.delete(state, [STAGED])


def _advise(state: Any, app_flows: Path, policies: Path, work: Path) -> list[str]:
    """Policies learned from step 1's flows replace the hand-written ones; the app still
    works, and what it never did is denied."""
    from enforcer.commands.lab import check_documents, probe_documents
    from enforcer.lab import lab

    _say("\n== 8. Advise: policies learned from the app's traffic in step 1\n")
    advice = work / "advice.yaml"
    _cmd(f"enforcer lab delete --name {state.name} {_shown(policies)}   # no policies again")
    _cmd(f"enforcer advise --lab {state.name} --flows {app_flows.name} > {advice.name}")
    _cmd(f"enforcer lab apply --name {state.name} {advice.name}")
    lab.delete(state, [policies])
    proc = subprocess.run(
        [sys.executable, "-m", "enforcer.cli", "advise", "--lab", state.name,
         "--flows", str(app_flows)],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        _say(f"!! advise failed (exit {proc.returncode}): {proc.stderr.strip()}")
        return ["advise failed"]
    advice.write_text(proc.stdout)
    for line in proc.stderr.strip().splitlines():
        _say(f"   {line}")
    names = [line.split(":", 1)[1].strip() for line in proc.stdout.splitlines()
             if line.startswith("  name:")]
    _say(f"   {len(names)} policies: {', '.join(names)}")
    took = lab.apply(state, [advice])
    _say(f"   applied and enforced in {took * 1000:.0f} ms\n")
    _run_app(state, (*APP_TRAFFIC, FORBIDDEN))
    docs = probe_documents(state, None, None, 4, PROBE_TIMEOUT)
    problems = check_documents(state, docs, 4)
    allowed = {(src, dst, d["port"], d["protocol"]) for d in docs
               for src, row in d["matrix"].items() for dst, ok in row.items()
               if ok and src != dst}
    # advise allows DNS on TCP 53 as well as the UDP 53 it saw (resolvers fall back to TCP).
    expected = {*APP_TRAFFIC, *((s, d, 53, "TCP") for s, d, p, _ in APP_TRAFFIC if p == 53)}
    pairs = sum(len(row) - 1 for d in docs for row in d["matrix"].values())
    _say(f"\n   every pod pair on every port: {len(allowed)} of {pairs} allowed")
    problems += [f"{s} -> {d} {p}/{proto}: allowed, never observed"
                 for s, d, p, proto in sorted(allowed - expected)]
    problems += [f"{s} -> {d} {p}/{proto}: observed, now denied"
                 for s, d, p, proto in sorted(expected - allowed)]
    if problems:
        _say("!! the advice does not fit the app, or the kernel disagrees with the model:")
        for line in problems:
            _say(f"   {line}")
        return problems
    _say("   exactly the app's own paths (DNS on TCP 53 too): the app works under the advised "
         "policies, everything else is denied, and the kernel agrees with the model")
    return []
