"""Model-scale benchmark: load and resolve a large cluster (default 10,000 pods in 500
namespaces, 2,000 policies). Target: under 2 s and under 300 MB.

    .venv/bin/python -m bench.model_scale [--pods N --namespaces N --policies N --repeats R]

"load" parses every object as the API would deliver it (decoded JSON) with defaulting and
validation and indexes it; "resolve" computes every policy's subject pods and every selector
peer's pods (what the compiler needs). The work runs in a fresh child process so that its
peak RSS (ru_maxrss) is the memory figure, interpreter included.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from enforcer.model.cluster import ClusterState
from enforcer.model.evaluate import evaluate
from enforcer.model.loader import parse_object

REPO_ROOT = Path(__file__).resolve().parents[1]
APPS = ["web", "api", "worker", "cache", "db", "queue", "auth", "search"]
TEAMS = ["payments", "shop", "search", "platform", "data"]


def generate(pods: int, namespaces: int, policies: int, seed: int = 1) -> list[dict[str, Any]]:
    """A realistic cluster as API objects: namespaced apps, default-deny, DNS, app rules."""
    rng = random.Random(seed)
    docs: list[dict[str, Any]] = []
    ns_names = [f"team-{i:04d}" for i in range(namespaces)]
    for i, name in enumerate(ns_names):
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": name,
                    "uid": f"ns-{i}",
                    "labels": {
                        "team": TEAMS[i % len(TEAMS)],
                        "env": rng.choice(["prod", "staging", "dev"]),
                    },
                },
            }
        )
    for i in range(pods):
        ns = ns_names[i % namespaces]
        app = APPS[(i // namespaces) % len(APPS)]
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"{app}-{i:06d}",
                    "namespace": ns,
                    "uid": f"pod-{i}",
                    "labels": {
                        "app": app,
                        "tier": "backend" if app in ("db", "cache") else "frontend",
                        "version": rng.choice(["v1", "v2"]),
                        "pod-template-hash": f"{i % 97:x}",
                    },
                },
                "spec": {
                    "nodeName": f"node-{i % 50}",
                    "containers": [
                        {
                            "name": app,
                            "ports": [
                                {"name": "http", "containerPort": 8080},
                                {"name": "metrics", "containerPort": 9090},
                            ],
                        }
                    ],
                },
                "status": {
                    "phase": "Running",
                    "podIP": f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}",
                    "podIPs": [
                        {"ip": f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}"},
                        {"ip": f"fd00::{i:x}"},
                    ],
                },
            }
        )
    for i in range(2):  # cluster DNS, which the "dns" policies select
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"coredns-{i}",
                    "namespace": "kube-system",
                    "labels": {"k8s-app": "kube-dns"},
                },
                "spec": {
                    "containers": [
                        {
                            "name": "coredns",
                            "ports": [
                                {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                            ],
                        }
                    ]
                },
                "status": {"phase": "Running", "podIPs": [{"ip": f"10.255.0.{i + 2}"}]},
            }
        )
    kinds = ["deny", "dns", "app", "cross", "expr", "cidr"]
    for i in range(policies):
        ns = ns_names[i % namespaces]
        kind = kinds[(i // namespaces) % len(kinds)]
        app, other = rng.sample(APPS, 2)
        spec: dict[str, Any]
        if kind == "deny":
            spec = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        elif kind == "dns":
            spec = {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                                },
                                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                            }
                        ],
                        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                    }
                ],
            }
        elif kind == "app":
            spec = {
                "podSelector": {"matchLabels": {"app": app}},
                "ingress": [
                    {
                        "from": [{"podSelector": {"matchLabels": {"app": other}}}],
                        "ports": [{"port": "http"}],
                    }
                ],
            }
        elif kind == "cross":
            spec = {
                "podSelector": {"matchLabels": {"app": app}},
                "ingress": [
                    {
                        "from": [
                            {
                                "namespaceSelector": {"matchLabels": {"team": rng.choice(TEAMS)}},
                                "podSelector": {"matchLabels": {"app": other}},
                            }
                        ],
                        "ports": [{"port": 8080}],
                    }
                ],
            }
        elif kind == "expr":
            spec = {
                "podSelector": {
                    "matchExpressions": [{"key": "app", "operator": "In", "values": [app, other]}]
                },
                "ingress": [
                    {
                        "from": [
                            {
                                "namespaceSelector": {
                                    "matchExpressions": [
                                        {"key": "env", "operator": "NotIn", "values": ["dev"]}
                                    ]
                                }
                            }
                        ],
                        "ports": [{"port": 9090, "endPort": 9099}],
                    }
                ],
            }
        else:
            spec = {
                "podSelector": {"matchLabels": {"tier": "frontend"}},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [
                            {
                                "ipBlock": {
                                    "cidr": "0.0.0.0/0",
                                    "except": ["10.0.0.0/8", "169.254.0.0/16"],
                                }
                            }
                        ],
                        "ports": [{"port": 443}],
                    }
                ],
            }
        docs.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": f"{kind}-{i:05d}", "namespace": ns, "uid": f"np-{i}"},
                "spec": spec,
            }
        )
    return docs


def load(docs: list[dict[str, Any]]) -> ClusterState:
    state = ClusterState()
    for doc in docs:
        obj = parse_object(doc, "bench")
        assert obj is not None
        state.upsert(obj)
    return state


def resolve(state: ClusterState) -> int:
    """Resolve every policy's subjects and selector peers; returns the number of pairs."""
    total = 0
    for policy in state.policies.values():
        total += len(state.pods_selected_by(policy))
        for rule in (*policy.ingress, *policy.egress):
            for peer in rule.peers or ():
                total += len(state.peer_pods(policy, peer))
    return total


def _child(pods: int, namespaces: int, policies: int, repeats: int) -> dict[str, Any]:
    docs = generate(pods, namespaces, policies)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    loads, resolves = [], []
    pairs = 0
    state = ClusterState()
    for _ in range(repeats):
        del state
        t0 = time.perf_counter()
        state = load(docs)
        t1 = time.perf_counter()
        pairs = resolve(state)
        t2 = time.perf_counter()
        loads.append(t1 - t0)
        resolves.append(t2 - t1)
    rng = random.Random(2)
    keys = sorted(state.pods)
    sample = [(rng.choice(keys), rng.choice(keys)) for _ in range(2000)]
    t0 = time.perf_counter()
    for src, dst in sample:
        evaluate(state, src, dst, 8080, "TCP")
    per_eval = (time.perf_counter() - t0) / len(sample)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    totals = [a + b for a, b in zip(loads, resolves, strict=True)]
    return {
        "pods": pods,
        "namespaces": namespaces,
        "policies": policies,
        "repeats": repeats,
        "load_s": statistics.median(loads),
        "resolve_s": statistics.median(resolves),
        "total_s": statistics.median(totals),
        "resolved_pairs": pairs,
        "evaluate_us": per_eval * 1e6,
        "peak_rss_mb": peak_kb / 1024,
        "input_rss_mb": rss_before / 1024,
    }


def run(
    pods: int = 10_000, namespaces: int = 500, policies: int = 2_000, repeats: int = 3
) -> dict[str, Any]:
    """Run the benchmark in a fresh process and return its figures."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.model_scale",
            "--child",
            "--pods",
            str(pods),
            "--namespaces",
            str(namespaces),
            "--policies",
            str(policies),
            "--repeats",
            str(repeats),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,  # so `-m bench.model_scale` resolves from anywhere
    )
    figures: dict[str, Any] = json.loads(out.stdout)
    return figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.model_scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--pods", type=int, default=10_000)
    p.add_argument("--namespaces", type=int, default=500)
    p.add_argument("--policies", type=int, default=2_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.pods, args.namespaces, args.policies, args.repeats)))
        return 0
    r = run(args.pods, args.namespaces, args.policies, args.repeats)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    ok = r["total_s"] < 2.0 and r["peak_rss_mb"] < 300
    print(
        f"model scale: {r['pods']} pods, {r['namespaces']} namespaces, {r['policies']} policies "
        f"(median of {r['repeats']})\n"
        f"  load (parse+validate+index): {r['load_s'] * 1000:8.1f} ms\n"
        f"  resolve all selectors:       {r['resolve_s'] * 1000:8.1f} ms "
        f"({r['resolved_pairs']} policy/peer-pod pairs)\n"
        f"  load + resolve:              {r['total_s'] * 1000:8.1f} ms   (target < 2000 ms)\n"
        f"  peak RSS:                    {r['peak_rss_mb']:8.1f} MB   (target < 300 MB; "
        f"{r['input_rss_mb']:.1f} MB with just the input)\n"
        f"  one verdict (evaluate):      {r['evaluate_us']:8.1f} us\n"
        f"  {'within target' if ok else 'OVER TARGET'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
