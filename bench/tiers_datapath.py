"""Datapath cost of cluster-scoped policies: TCP throughput, UDP packet rate and new-connection
rate with 1, 10, 100 and 1,000 Admin-tier rules in force on the server, against the same build
with none (NetworkPolicy only), side by side in one run, each as a ratio to no program.

    .venv/bin/python -m bench.tiers_datapath [--quick] [--rules 1 10 100 1000] [--json]

bench.datapath's machinery (topology, servers, sample(), interleaved rounds, ratios paired with
each round's no-program value) with the server's table from the real compiler: a ClusterState
with the client, the server and an intruder pod (real, in this topology) and a fake pod per
rule in a namespace of its own (addresses in the LPM, as bench.datapath's fake peers), a
NetworkPolicy on the server allowing the client's and the intruder's namespaces on the
benchmark ports, and N rules over ClusterNetworkPolicies of 25 rules each (Admin tier,
priorities spread) selecting the server's namespace:

- rule 0 denies the intruder's namespace (so the intruder is denied by the Admin tier only),
- rule 1 passes the client's namespace to NetworkPolicy (which allows it),
- the others Accept, Deny or Pass a fake peer's namespace (or its pods by label), on TCP 5201
  or on every port.

The compiler flattens them into the server's table (allow and deny entries), written with
Datapath.set_identities / set_endpoint. Before the rounds each configuration is checked with
packets: the client connects, the intruder does not (with no cluster rules it does), and the
table holds deny entries. Per packet the program does the same two lookups whatever N is
(bpf/lib/policy.h), so the target (issue 21) is a ratio within 0.02 of the same build with no
cluster rules, and no slope from 1 to 1,000.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import statistics
import subprocess
import sys
from collections.abc import Mapping
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from bench.datapath import (
    CONN_PORT,
    IPERF_PORT,
    METRICS,
    POD_FLOW_BUDGET,
    QUICK_ROUNDS,
    ROUNDS,
    Measure,
    detach_programs,
    fake_peers,
    in_ns,
    interleave,
    paired_ratios,
    sample,
    start_servers,
    stop_servers,
)
from enforcer.compiler import Compiler
from enforcer.datapath import Datapath, DatapathConfig
from enforcer.datapath.types import EndpointPolicy
from enforcer.model.cluster import ClusterState
from enforcer.model.loader import parse_object
from enforcer.model.objects import IPNetwork
from enforcer.model.parse_clusterpolicy import parse_cluster_object
from enforcer.topology import Pod, Topology

RULE_COUNTS = (1, 10, 100, 1000)
RULES_PER_POLICY = 25  # ClusterNetworkPolicy v1alpha2's limit per direction
NODE = "bench-node"
NAME_LABEL = "kubernetes.io/metadata.name"
NONE = "ours, 0 cluster rules"
ENDPOINT_IDS = {"client": 1, "server": 2, "intruder": 3}

CONNECT = """
import socket, sys
try:
    socket.create_connection(("{ip}", {port}), timeout={timeout}).close()
except OSError:
    sys.exit(1)
"""


def _namespace(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "uid": f"ns-{name}", "labels": labels}}


def _pod(namespace: str, name: str, ip: IPv4Address, node: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": namespace, "name": name, "uid": f"pod-{namespace}-{name}",
                         "labels": {"app": name}},
            "spec": {"nodeName": node, "containers": [{"name": "c"}]},
            "status": {"phase": "Running", "podIP": str(ip), "podIPs": [{"ip": str(ip)}]}}


def cluster_docs(client: IPv4Address, server: IPv4Address, intruder: IPv4Address,
                 peers: int) -> list[dict[str, Any]]:
    """Namespaces, pods and the server's NetworkPolicy (no cluster policies)."""
    docs = [
        _namespace("bench-server", {"guarded": "true"}),
        _namespace("bench-client", {"bench": "peer"}),
        _namespace("bench-intruder", {"bench": "peer"}),
        _pod("bench-server", "server", server, NODE),
        _pod("bench-client", "client", client, NODE),
        _pod("bench-intruder", "intruder", intruder, NODE),
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"namespace": "bench-server", "name": "from-peers", "uid": "np-peers"},
         "spec": {"podSelector": {}, "ingress": [{
             "from": [{"namespaceSelector": {"matchLabels": {"bench": "peer"}}}],
             "ports": [{"protocol": "TCP", "port": IPERF_PORT},
                       {"protocol": "UDP", "port": IPERF_PORT},
                       {"protocol": "TCP", "port": CONN_PORT}]}]}},
    ]
    for i, ip in enumerate(fake_peers(peers)):
        ns = f"peer-{i:04d}"
        docs += [_namespace(ns, {"bench": "fake"}), _pod(ns, "peer", ip, "elsewhere")]
    return docs


def cluster_policies(n: int) -> list[dict[str, Any]]:
    """n Admin-tier rules over ClusterNetworkPolicies of RULES_PER_POLICY rules (module
    docstring)."""
    rules: list[dict[str, Any]] = []
    for i in range(n):
        if i == 0:
            rule: dict[str, Any] = {"name": "deny-intruder", "action": "Deny", "from": [
                {"namespaces": {"matchLabels": {NAME_LABEL: "bench-intruder"}}}]}
        elif i == 1:
            rule = {"name": "client-to-networkpolicy", "action": "Pass", "from": [
                {"namespaces": {"matchLabels": {NAME_LABEL: "bench-client"}}}]}
        else:
            if i % 4 == 3:  # ingress peers are namespaces or pods (no networks)
                peer: dict[str, Any] = {"pods": {
                    "namespaceSelector": {"matchLabels": {NAME_LABEL: f"peer-{i:04d}"}},
                    "podSelector": {"matchLabels": {"app": "peer"}}}}
            else:
                peer = {"namespaces": {"matchLabels": {NAME_LABEL: f"peer-{i:04d}"}}}
            rule = {"name": f"r{i}", "action": ("Accept", "Deny", "Pass")[i % 3],
                    "from": [peer]}
            if i % 2 == 0:
                rule["protocols"] = [{"tcp": {"destinationPort": {"number": IPERF_PORT}}}]
        rules.append(rule)
    docs = []
    for p in range(0, n, RULES_PER_POLICY):
        name = f"guard-{p // RULES_PER_POLICY:03d}"
        docs.append({
            "apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": name, "uid": f"cnp-{name}"},
            "spec": {"tier": "Admin", "priority": 10 + (p // RULES_PER_POLICY) * 20 % 990,
                     "subject": {"namespaces": {"matchLabels": {"guarded": "true"}}},
                     "ingress": rules[p:p + RULES_PER_POLICY]}})
    return docs


def compile_server(base: list[dict[str, Any]], n: int
                   ) -> tuple[Mapping[IPNetwork, int], EndpointPolicy]:
    """The identity map and the server's table, from the real compiler."""
    state = ClusterState()
    for doc in base:
        obj = parse_object(doc, "bench")
        assert obj is not None
        state.upsert(obj)
    for doc in cluster_policies(n):
        policy = parse_cluster_object(doc, "bench")
        assert policy is not None
        state.upsert(policy)
    compiler = Compiler(state, NODE)
    compiler.full()
    return dict(compiler.identities()), compiler.endpoint_policy("bench-server/server")


def connects(src: Pod, dst: Pod, timeout: float = 1.0) -> bool:
    code = CONNECT.format(ip=dst.ipv4, port=CONN_PORT, timeout=timeout)
    return subprocess.run(in_ns(src.netns, sys.executable, "-c", code)).returncode == 0


def run(quick: bool = False, counts: tuple[int, ...] | list[int] = RULE_COUNTS,
        seconds: int | None = None) -> dict[str, Any]:
    plan = dict(QUICK_ROUNDS if quick else ROUNDS)
    if seconds is not None:
        plan = {k: (n, seconds) for k, (n, _) in plan.items()}
    counts = tuple(counts)
    pin_root = Path("/sys/fs/bpf") / f"enf-bench-{secrets.token_hex(4)}"
    results: dict[str, Any] = {
        "rounds": {k: {"rounds": n, "seconds": secs} for k, (n, secs) in plan.items()},
        "counts": list(counts), "tables": {}, "checks": {}}
    procs: list[subprocess.Popen[bytes]] = []
    samples: dict[str, dict[str, list[float]]] = {k: {} for k in METRICS}
    try:
        with Topology("routed") as topo:
            client, server = topo.add_pod(name="client"), topo.add_pod(name="server")
            intruder = topo.add_pod(name="intruder")
            pods = {"client": client, "server": server, "intruder": intruder}
            procs.extend(start_servers(server))
            base = cluster_docs(client.ipv4, server.ipv4, intruder.ipv4, max(counts))
            compiled = {n: compile_server(base, n) for n in (0, *counts)}
            for n, (idents, table) in compiled.items():
                results["tables"][n] = {"allow_entries": len(table.entries),
                                        "deny_entries": len(table.denies),
                                        "identities": len(set(idents.values()))}
                if n:
                    assert table.denies, f"{n} cluster rules compiled to no deny entry"
            dp = Datapath.open(pin_root, DatapathConfig(
                max_identities=4 * max(counts) + 64, pod_flows_per_second=POD_FLOW_BUDGET,
                pod_flow_burst=POD_FLOW_BUDGET))
            written: dict[IPNetwork, int] = {}

            def use(n: int) -> None:
                """Scenario n's identities (only the prefixes that differ) and tables."""
                idents = compiled[n][0]
                changes: dict[IPNetwork, int | None] = {
                    net: None for net in written if net not in idents}
                changes |= {net: i for net, i in idents.items() if written.get(net) != i}
                if changes:
                    dp.set_identities(changes)
                    written.clear()
                    written.update(idents)
                for name in ("client", "server", "intruder"):
                    pod = pods[name]
                    dp.attach(pod.host_ifindex, pod.node.netns)  # in place if attached
                    dp.set_endpoint(pod.host_ifindex, ENDPOINT_IDS[name],
                                    compiled[n][1] if name == "server"
                                    else EndpointPolicy.allow_all())

            try:
                dp.add_local_endpoints({p.ipv4: (ENDPOINT_IDS[k], p.host_ifindex)
                                        for k, p in pods.items()})
                # What the benchmark claims: the client passes (Pass, then NetworkPolicy), the
                # intruder is denied by the Admin Deny alone (NetworkPolicy allows it).
                for n in (0, *counts):
                    use(n)
                    ok = {"client": connects(client, server),
                          "intruder": connects(intruder, server)}
                    results["checks"][n] = ok
                    assert ok["client"], f"{n} cluster rules: the client cannot connect"
                    assert ok["intruder"] == (n == 0), (
                        f"{n} cluster rules: the intruder {'connects' if n else 'cannot'}")

                def no_program(keys: tuple[str, ...], secs: float) -> dict[str, float]:
                    detach_programs((client, server, intruder))
                    return sample(client, server, secs, keys)

                def ours(n: int) -> Measure:
                    def measure(keys: tuple[str, ...], secs: float) -> dict[str, float]:
                        use(n)
                        return sample(client, server, secs, keys)
                    return measure

                scenarios: list[tuple[str, Measure]] = [
                    ("no program", no_program),
                    *((f"ours, {n} cluster rules", ours(n)) for n in (0, *counts)),
                ]
                interleave(plan, scenarios, samples)
            finally:
                detach_programs((client, server, intruder))
                dp.close()
    finally:
        stop_servers(procs)
        shutil.rmtree(pin_root, ignore_errors=True)
    results["scenarios"] = {name: {k: statistics.median(samples[k][name]) for k in METRICS}
                            for name in samples["tcp_gbps"]}
    results["ratios"] = paired_ratios(samples)
    # Each count against the same build with no cluster rules, paired within each round.
    results["vs_none"] = {name: v for name, v in paired_ratios(samples, NONE).items()
                          if name not in ("no program", NONE)}
    results["samples"] = samples
    return results


def report(r: dict[str, Any]) -> str:
    lines = [f"{'scenario':<28}" + "".join(f"{label:>22}" for label, _ in METRICS.values())
             + "   ratio - ratio(0 rules)"]
    none = r["ratios"][NONE]
    for name, vals in r["scenarios"].items():
        ratios = r["ratios"][name]
        cells = "".join(f"{vals[k]:>13.2f} ({ratios[k]:.3f}x)" for k in METRICS)
        diff = ("   " + " / ".join(f"{ratios[k] - none[k]:+.3f}" for k in METRICS)
                if name != "no program" else "")
        lines.append(f"{name:<28}{cells}{diff}")
    lines.append("paired per round against 0 cluster rules: " + "; ".join(
        f"{name.removeprefix('ours, ')}: " + " / ".join(f"{v[k]:.3f}" for k in METRICS)
        for name, v in r["vs_none"].items()))
    lines.append("server tables: " + ", ".join(
        f"{n} rules: {t['allow_entries']} allow + {t['deny_entries']} deny entries, "
        f"{t['identities']} identities" for n, t in r["tables"].items()))
    lines.append("checked with packets: client connects, intruder denied by the Admin Deny "
                 "(connects with 0 rules): " + ", ".join(
                     f"{n}: {c}" for n, c in r["checks"].items()))
    lines.append("(medians over interleaved rounds: " + ", ".join(
        f"{METRICS[k][0]}: {x['rounds']} of {x['seconds']:g} s"
        for k, x in r["rounds"].items()) + ")")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.tiers_datapath", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="bench.datapath's quick rounds")
    p.add_argument("--rules", type=int, nargs="+", default=list(RULE_COUNTS))
    p.add_argument("--seconds", type=int, default=None,
                   help="seconds per run (whole: iperf3 reads -t 0.5 as no limit)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    r = run(args.quick, args.rules, args.seconds)
    print(json.dumps(r, indent=2) if args.json else report(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

