"""Event to enforced for a cluster-scoped policy change, with the real agent, checked with
packets: bench.agent_latency's node (four real pods in namespace `lat`, the agent under
nsenter reading a folder that also holds the synthetic cluster), plus the realistic mix of 500
ClusterNetworkPolicies (bench.tiers_compile.realistic_policies) over that cluster, its
namespaces grouped into tenants; `lat` belongs to tenant-000.

    .venv/bin/python -m bench.tiers_agent [--quick] [--pods N --policies N]
                                          [--cluster-policies N] [--changes N] [--json]

A change is tenant-000's ingress guardrail (one of the 500: it selects the tenant's
namespaces, here the node's pods in `lat`) renamed into the folder with its same-tenant rule
toggled between Pass (the tenant's NetworkPolicies decide: `server-from-clients` allows client
-> server on TCP/80) and Deny; client -> server follows. The latency ends at the first of three
consecutive fresh connections with the new verdict (bench/flip_probe.py), as in
bench.agent_latency; the agent's compute and CPU per change are its own histograms, scraped
around each change. Also the agent's cold start and RSS with the 500 policies in force.
Target (issue 21): p99 under 100 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from typing import Any

from bench.agent_latency import NS, Node, Progress, _pct, _quiet
from bench.tiers_compile import label_tenants, realistic_policies, tenant_ingress

TENANT = "tenant-000"
EVENT = "cluster_policy_change"


class TieredNode(Node):
    """bench.agent_latency's node with tenants and the cluster policies in its folder."""

    cluster_policies = 500

    def _write_cluster(self, pods: int, policies: int) -> None:
        from bench.agent_latency import CHUNK, _pod, _policy
        from bench.model_scale import generate

        self.progress(f"writing {pods:,} pods, {policies:,} policies and "
                      f"{self.cluster_policies} cluster policies as manifests")
        docs = generate(pods, max(1, pods // 20), policies)
        tenants = label_tenants(docs)
        namespaces = [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"]
        cnps = realistic_policies(namespaces, tenants, self.cluster_policies)
        self.guardrail = next(d for d in cnps if d["metadata"]["name"] == f"{TENANT}-ingress")
        # In a file of its own, the one each change replaces (the same object in two files:
        # the later file by name wins, enforcer/sources/directory.py).
        docs += [d for d in cnps if d is not self.guardrail]
        for i in range(0, len(docs), CHUNK):
            items = docs[i : i + CHUNK]
            path = self.folder / f"cluster-{i // CHUNK:04d}.json"
            path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        self.put(
            {"apiVersion": "v1", "kind": "Namespace",
             "metadata": {"name": NS, "labels": {"tenant": TENANT}}},
            _pod("client", {"app": "client", "role": "client"}, str(self.ip("client"))),
            _pod("server", {"app": "server"}, str(self.ip("server"))),
            _pod("other", {"app": "other", "role": "other"}, str(self.ip("other"))),
            _policy("server-from-clients", "client"),
            _policy("server-from-other", "nobody"),
            self.guardrail,
        )

    def guardrail_with(self, same_tenant: str) -> dict[str, Any]:
        return tenant_ingress(TENANT, self.guardrail["spec"]["priority"], same_tenant)


def run(quick: bool = False, pods: int | None = None, policies: int | None = None,
        cluster_policies: int = 500, changes: int | None = None,
        progress: Progress = _quiet) -> dict[str, Any]:
    n_pods = pods or (2_000 if quick else 10_000)
    n_policies = policies if policies is not None else n_pods // 5
    n_changes = changes or (10 if quick else 50)
    TieredNode.cluster_policies = cluster_policies
    node = TieredNode(n_pods, n_policies, progress)
    out: dict[str, Any] = {"pods": n_pods, "policies": n_policies,
                           "cluster_policies": cluster_policies, "changes": n_changes,
                           "probe_interval_ms": 2.0, "ms": [], "compute_ms": [], "cpu_ms": []}
    try:
        progress(f"{n_pods:,} pods: cold start with {cluster_policies} cluster policies")
        enforced, _ = node.cold_start()
        out["cold_start_s"] = enforced
        out["rss_mb"] = node.rss_mb()
        for i in range(n_changes):
            progress(f"{n_pods:,} pods: change {i + 1}/{n_changes} (Deny, then Pass)")
            for action, want in (("Deny", False), ("Pass", True)):
                latency, compute, cpu = node.change(
                    node.probe("client"), want, node.staged(node.guardrail_with(action)))
                out["ms"].append(latency * 1000)
                if compute == compute:  # not nan
                    out["compute_ms"].append(compute * 1000)
                if cpu == cpu:
                    out["cpu_ms"].append(cpu * 1000)
        out["rss_after_changes_mb"] = node.rss_mb()
    except Exception as exc:
        raise RuntimeError(f"{exc}\nagent log:\n{node.agent_log_tail()}") from exc
    finally:
        node.close()
    return out


def report(r: dict[str, Any]) -> str:
    v, c, cpu = r["ms"], r["compute_ms"], r["cpu_ms"]
    med = statistics.median
    return (
        f"agent: {r['pods']:,} pods, {r['policies']:,} NetworkPolicies, "
        f"{r['cluster_policies']} ClusterNetworkPolicies; {len(v)} changes of "
        f"{TENANT}-ingress (Pass <-> Deny)\n"
        f"  event to enforced: median {med(v):.1f} ms, p99 {_pct(v, 99):.1f} ms, max "
        f"{max(v):.1f} ms (target p99 < 100 ms)\n"
        f"  agent compute (received to maps written): median "
        f"{med(c) if c else float('nan'):.2f} ms; of it CPU median "
        f"{med(cpu) if cpu else float('nan'):.2f} ms\n"
        f"  cold start {r['cold_start_s']:.2f} s; RSS {r['rss_mb']:.0f} MB after it, "
        f"{r['rss_after_changes_mb']:.0f} MB after the changes")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.tiers_agent", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--pods", type=int, default=None)
    p.add_argument("--policies", type=int, default=None)
    p.add_argument("--cluster-policies", type=int, default=500)
    p.add_argument("--changes", type=int, default=None)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    r = run(args.quick, args.pods, args.policies, args.cluster_policies, args.changes,
            progress=lambda m: print(m, file=sys.stderr))
    print(json.dumps(r, indent=2) if args.json else report(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
