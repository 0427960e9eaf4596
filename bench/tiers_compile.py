"""Cluster-scoped policies in the compiler: full compile, memory, table entries per endpoint and
the compute of a cluster-policy change, with 500 ClusterNetworkPolicies on the 10,000-pod
cluster (bench.model_scale's: 500 namespaces, 2,000 NetworkPolicies, pods over 100 nodes,
compiled for node-0), against the same cluster with none.

    .venv/bin/python -m bench.tiers_compile [--pods N --policies N --cluster-policies N]
                                            [--events N] [--repeats N] [--no-stress]
                                            [--stress-pods N] [--json]

The realistic mix (`realistic_policies`) is what an administrator writes: namespaces grouped
into tenants of five (a `tenant` label), per tenant an ingress guardrail (Accept from the
monitoring namespace on its scrape port, Pass from the tenant's own namespaces to their
NetworkPolicies, Deny from every other tenant) and an egress one (Pass within the tenant,
Deny to other tenants); per namespace Pass rules handing named peers to NetworkPolicy; per
tenant a pod-subject policy guarding its databases; and three cluster-wide ones (egress Deny
to the metadata service 169.254.169.254/32, egress Accept to kube-dns on UDP and TCP 53, a
Baseline Deny of ingress into namespaces labelled isolated); priorities spread over 0-1000.
The stress mix (`stress_policies`) is deliberately unrealistic: a third of the policies select
every namespace and name peers by pod labels across all namespaces; it is reported apart, at
2,000 pods by default (at 10,000 it runs for many minutes).

Each size runs in a fresh child process, so peak RSS (ru_maxrss: state, compiler and the
generator's input) is its own. A change is one tenant guardrail's same-tenant rule toggled
between Pass and Deny (ClusterState.upsert + Compiler.on_upsert, as the agent does it).
Targets (issue 21): none beyond reporting; a cluster-policy change must leave room for an
event-to-enforced p99 under 100 ms (bench.tiers_agent measures that with packets).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

from bench.compile_latency import NODE, _spread
from bench.model_scale import APPS, REPO_ROOT, generate, load
from enforcer.compiler import Compiler
from enforcer.model.clusterpolicy import ClusterPolicy
from enforcer.model.parse_clusterpolicy import parse_cluster_object

API = "policy.networking.k8s.io/v1alpha2"
KIND = "ClusterNetworkPolicy"
TENANT_SIZE = 5  # namespaces per tenant
MONITORING = "monitoring"
NAME_LABEL = "kubernetes.io/metadata.name"


def tenant_of(index: int) -> str:
    return f"tenant-{index // TENANT_SIZE:03d}"


def label_tenants(docs: list[dict[str, Any]]) -> list[str]:
    """Group the generated namespaces into tenants (label `tenant`), label every tenth one
    `isolated: "true"`, and add a monitoring namespace with a Prometheus pod. Returns the
    tenants in order."""
    namespaces = [d for d in docs if d["kind"] == "Namespace"]
    tenants: list[str] = []
    for i, ns in enumerate(namespaces):
        labels = ns["metadata"].setdefault("labels", {})
        labels["tenant"] = tenant_of(i)
        if i % 10 == 9:
            labels["isolated"] = "true"
        if labels["tenant"] not in tenants:
            tenants.append(labels["tenant"])
    docs.append({"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": MONITORING, "uid": "ns-monitoring",
                              "labels": {"purpose": "monitoring"}}})
    docs.append({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "prometheus-0", "namespace": MONITORING, "uid": "pod-prom",
                     "labels": {"app": "prometheus"}},
        "spec": {"nodeName": "node-1", "containers": [{"name": "prometheus"}]},
        "status": {"phase": "Running", "podIP": "10.254.0.9", "podIPs": [{"ip": "10.254.0.9"}]},
    })
    return tenants


def _cnp(name: str, tier: str, priority: int, subject: dict[str, Any],
         ingress: list[dict[str, Any]] | None = None,
         egress: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"tier": tier, "priority": priority, "subject": subject}
    if ingress:
        spec["ingress"] = ingress
    if egress:
        spec["egress"] = egress
    return {"apiVersion": API, "kind": KIND, "metadata": {"name": name, "uid": f"cnp-{name}"},
            "spec": spec}


def _tcp(port: int) -> dict[str, Any]:
    return {"tcp": {"destinationPort": {"number": port}}}


def _udp(port: int) -> dict[str, Any]:
    return {"udp": {"destinationPort": {"number": port}}}


def _tenant_ns(tenant: str) -> dict[str, Any]:
    return {"matchLabels": {"tenant": tenant}}


def _other_tenants(tenant: str) -> dict[str, Any]:
    return {"matchExpressions": [{"key": "tenant", "operator": "Exists"},
                                 {"key": "tenant", "operator": "NotIn", "values": [tenant]}]}


def tenant_ingress(tenant: str, priority: int, same_tenant: str = "Pass") -> dict[str, Any]:
    """A tenant's ingress guardrail; `same_tenant` is the action of its second rule (Pass:
    the tenant's own NetworkPolicies decide; the benchmarks toggle it to Deny)."""
    return _cnp(f"{tenant}-ingress", "Admin", priority, {"namespaces": _tenant_ns(tenant)},
                ingress=[
                    {"name": "monitoring-scrapes", "action": "Accept",
                     "from": [{"namespaces": {"matchLabels": {"purpose": "monitoring"}}}],
                     "protocols": [_tcp(9090)]},
                    {"name": "same-tenant", "action": same_tenant,
                     "from": [{"namespaces": _tenant_ns(tenant)}]},
                    {"name": "other-tenants", "action": "Deny",
                     "from": [{"namespaces": _other_tenants(tenant)}]},
                ])


def realistic_policies(namespaces: list[str], tenants: list[str], count: int = 500
                       ) -> list[dict[str, Any]]:
    """`count` ClusterNetworkPolicies of the realistic mix (module docstring)."""
    docs: list[dict[str, Any]] = [
        _cnp("allow-dns", "Admin", 1, {"namespaces": {}}, egress=[
            {"name": "kube-dns", "action": "Accept",
             "to": [{"pods": {"namespaceSelector": {"matchLabels": {NAME_LABEL: "kube-system"}},
                              "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}}],
             "protocols": [_udp(53), _tcp(53)]}]),
        _cnp("deny-metadata", "Admin", 2, {"namespaces": {}}, egress=[
            {"name": "metadata-service", "action": "Deny",
             "to": [{"networks": ["169.254.169.254/32"]}]}]),
        _cnp("isolated-namespaces", "Baseline", 10,
             {"namespaces": {"matchLabels": {"isolated": "true"}}}, ingress=[
                 {"name": "deny-all", "action": "Deny", "from": [{"namespaces": {}}]}]),
    ]
    # Per tenant: ingress and egress guardrails, priorities 100-499 spread by tenant.
    for t, tenant in enumerate(tenants):
        if len(docs) + 2 > count:
            break
        prio = 100 + (t * 397) % 400
        docs.append(tenant_ingress(tenant, prio))
        docs.append(_cnp(f"{tenant}-egress", "Admin", prio, {"namespaces": _tenant_ns(tenant)},
                         egress=[
                             {"name": "same-tenant", "action": "Pass",
                              "to": [{"namespaces": _tenant_ns(tenant)}]},
                             {"name": "other-tenants", "action": "Deny",
                              "to": [{"namespaces": _other_tenants(tenant)}]},
                         ]))
    # The rest: per tenant a database guard (pod subject), then per namespace Pass rules.
    i = 0
    while len(docs) < count:
        if i < len(tenants) and i % 3 == 0:
            tenant = tenants[i]
            docs.append(_cnp(f"{tenant}-databases", "Admin", 500 + i % 300, {"pods": {
                "namespaceSelector": _tenant_ns(tenant),
                "podSelector": {"matchLabels": {"app": "db"}}}}, ingress=[
                    {"name": "api-to-db", "action": "Accept",
                     "from": [{"pods": {"namespaceSelector": _tenant_ns(tenant),
                                        "podSelector": {"matchLabels": {"app": "api"}}}}],
                     "protocols": [_tcp(5432)]},
                    {"name": "no-one-else", "action": "Deny", "from": [{"namespaces": {}}],
                     "protocols": [_tcp(5432)]},
                ]))
        else:
            ns = namespaces[i % len(namespaces)]
            app = APPS[i % len(APPS)]
            docs.append(_cnp(f"pass-{ns}-{i}", "Admin", 800 + i % 200,
                             {"namespaces": {"matchLabels": {NAME_LABEL: ns}}}, ingress=[
                                 {"name": f"{app}-to-networkpolicy", "action": "Pass",
                                  "from": [{"pods": {"namespaceSelector": {},
                                                     "podSelector": {"matchLabels":
                                                                     {"app": app}}}}],
                                  "protocols": [_tcp(8080)]}]))
        i += 1
    return docs[:count]


def stress_policies(count: int = 500) -> list[dict[str, Any]]:
    """A third select every namespace with peers by pod labels across all namespaces (each
    a different app and port mix); the rest as realistic per-namespace Pass rules would be
    without tenants: one namespace each."""
    docs = []
    actions = ("Accept", "Deny", "Pass")
    for i in range(count):
        app, other = APPS[i % len(APPS)], APPS[(i * 3 + 1) % len(APPS)]
        if i % 3 == 0:
            subject: dict[str, Any] = {"namespaces": {}}
        else:
            subject = {"namespaces": {"matchLabels": {NAME_LABEL: f"team-{i % 500:04d}"}}}
        docs.append(_cnp(f"stress-{i:04d}", "Admin", (i * 7) % 1000, subject, ingress=[
            {"name": f"r{j}", "action": actions[(i + j) % 3],
             "from": [{"pods": {"namespaceSelector": {},
                                "podSelector": {"matchLabels": {"app": (app, other)[j]}}}}],
             "protocols": [_tcp(8000 + (i + j) % 100)]} for j in range(2)]))
    return docs


def parse_policies(docs: list[dict[str, Any]]) -> list[ClusterPolicy]:
    out = []
    for doc in docs:
        obj = parse_cluster_object(doc, "bench")
        assert isinstance(obj, ClusterPolicy), doc["metadata"]["name"]
        out.append(obj)
    return out


def _entries(compiler: Compiler) -> dict[str, float]:
    tables = list(compiler.policies().values())
    sizes = [len(t.entries) + len(t.denies) for t in tables]
    return {
        "entries_per_endpoint_mean": statistics.mean(sizes) if sizes else 0.0,
        "entries_per_endpoint_max": max(sizes, default=0),
        "deny_entries_per_endpoint_mean": statistics.mean(len(t.denies) for t in tables)
        if tables else 0.0,
    }


def _child(pods: int, policies: int, nodes: int, cluster_policies: int, mix: str,
           events: int) -> dict[str, Any]:
    docs = generate(pods, max(1, pods // 20), policies)
    _spread(docs, nodes)
    tenants = label_tenants(docs)
    namespaces = [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"
                  and d["metadata"]["name"] != MONITORING]
    raw = (realistic_policies(namespaces, tenants, cluster_policies) if mix == "realistic"
           else stress_policies(cluster_policies))
    state = load(docs)
    for policy in parse_policies(raw):
        state.upsert(policy)
    compiler = Compiler(state, NODE)
    gc.collect()
    t0 = time.perf_counter()
    compiler.full()
    full_s = time.perf_counter() - t0
    out: dict[str, Any] = {
        "pods": pods, "policies": policies, "cluster_policies": len(raw), "mix": mix,
        "nodes": nodes, "local_endpoints": len(compiler.local_endpoints()),
        "identities": compiler.identity_count(), "full_s": full_s, **_entries(compiler),
        "rules": sum(len(p.get("spec", {}).get(d, [])) for p in raw for d in ("ingress",
                                                                                "egress")),
    }
    if events and mix == "realistic" and cluster_policies:
        gc.freeze()  # as the agent does after its first sync (bench.compile_latency)
        # The guardrail of the tenant with the most local endpoints: a typical change.
        local = [state.pods[k] for k in compiler.local_endpoints()]
        by_tenant: dict[str, int] = {}
        for pod in local:
            tenant = state.namespace_identity(pod.namespace).labels.get("tenant")
            if tenant:
                by_tenant[tenant] = by_tenant.get(tenant, 0) + 1
        ranked = sorted(by_tenant.items(), key=lambda kv: (-kv[1], kv[0]))
        tenant = ranked[len(ranked) // 2][0]  # the median tenant, not the largest
        old = next(d for d in raw if d["metadata"]["name"] == f"{tenant}-ingress")
        prio = old["spec"]["priority"]
        versions = [parse_policies([tenant_ingress(tenant, prio, action)])[0]
                    for action in ("Deny", "Pass")]
        times, written = [], []
        for i in range(events):
            new = versions[i % 2]
            t0 = time.perf_counter()
            state.upsert(new)
            delta = compiler.on_upsert(new)
            times.append(time.perf_counter() - t0)
            written.append(len(delta.endpoints))
        ordered = sorted(times)
        out["change"] = {
            "tenant": tenant, "tenant_local_endpoints": by_tenant[tenant],
            "endpoints_written_median": statistics.median(written),
            "median_ms": statistics.median(ordered) * 1000,
            "p99_ms": ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] * 1000,
            "n": len(ordered),
        }
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def measure(pods: int = 10_000, policies: int = 2_000, nodes: int = 100,
            cluster_policies: int = 500, mix: str = "realistic", events: int = 100
            ) -> dict[str, Any]:
    """One compile in a fresh child process (its own peak RSS)."""
    cmd = [sys.executable, "-m", "bench.tiers_compile", "--child", "--pods", str(pods),
           "--policies", str(policies), "--nodes", str(nodes), "--cluster-policies",
           str(cluster_policies), "--mix", mix, "--events", str(events)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO_ROOT)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def run(pods: int = 10_000, policies: int = 2_000, nodes: int = 100,
        cluster_policies: int = 500, events: int = 100, repeats: int = 1,
        stress: bool = True, stress_pods: int = 2_000) -> dict[str, Any]:
    """none / realistic (and stress, at `stress_pods` with 0.2 NetworkPolicies per pod)
    compiles, `repeats` each, interleaved."""
    runs: dict[str, list[dict[str, Any]]] = {"none": [], "realistic": [], "stress": []}
    for _ in range(repeats):
        runs["none"].append(measure(pods, policies, nodes, 0, "realistic", 0))
        runs["realistic"].append(measure(pods, policies, nodes, cluster_policies, "realistic",
                                         events))
        if stress:
            runs["stress"].append(measure(stress_pods, stress_pods // 5, nodes,
                                          cluster_policies, "stress", 0))
    return {k: v for k, v in runs.items() if v}


def report(r: dict[str, Any]) -> str:
    lines = []
    for mix, runs in r.items():
        first = runs[0]
        full = statistics.median(x["full_s"] for x in runs)
        rss = statistics.median(x["peak_rss_mb"] for x in runs)
        lines.append(
            f"{mix:>9}: {first['cluster_policies']} cluster policies ({first['rules']} rules) "
            f"on {first['pods']:,} pods / {first['policies']:,} NetworkPolicies; "
            f"{first['local_endpoints']} local endpoints on {NODE}: full compile {full:.3f} s, "
            f"peak RSS {rss:.0f} MB, entries per endpoint mean "
            f"{first['entries_per_endpoint_mean']:.1f} (max {first['entries_per_endpoint_max']},"
            f" of them deny {first['deny_entries_per_endpoint_mean']:.1f}), identities "
            f"{first['identities']}")
        if "change" in first:
            c = first["change"]
            lines.append(
                f"           change of {c['tenant']}-ingress (Pass <-> Deny, "
                f"{c['tenant_local_endpoints']} local endpoints): median {c['median_ms']:.2f} ms"
                f", p99 {c['p99_ms']:.2f} ms (n={c['n']}, {c['endpoints_written_median']:g} "
                "tables rewritten)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.tiers_compile", description=__doc__.split("\n\n")[0])
    p.add_argument("--pods", type=int, default=10_000)
    p.add_argument("--policies", type=int, default=2_000)
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--cluster-policies", type=int, default=500)
    p.add_argument("--mix", choices=("realistic", "stress"), default="realistic")
    p.add_argument("--events", type=int, default=100)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--no-stress", action="store_true")
    p.add_argument("--stress-pods", type=int, default=2_000,
                   help="cluster size of the stress mix (it grows much faster than the "
                   "realistic one)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.pods, args.policies, args.nodes, args.cluster_policies,
                                args.mix, args.events)))
        return 0
    r = run(args.pods, args.policies, args.nodes, args.cluster_policies, args.events,
            args.repeats, not args.no_stress, args.stress_pods)
    print(json.dumps(r, indent=2) if args.json else report(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

