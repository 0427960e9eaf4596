"""Compiler benchmark: full compilation and per-event compute of the incremental compiler.

    .venv/bin/python -m bench.compile_latency [--pods N --namespaces N --policies N
                                              --nodes N --events N] [--json]

The cluster is bench.model_scale's (default 10,000 dual-stack pods in 500 namespaces, 2,000
policies), with pods spread over `nodes` nodes (default 100, so about 100 local pods). The
compiler runs for node-0. "full" is Compiler.full() on the loaded state. Each event's figure
is the compute an agent spends on it: ClusterState.upsert/remove plus the compiler's
on_upsert/on_remove (parsing is the source's job and not included). Targets: a single pod
event under 5 ms; full under 5 s.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import random
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.model_scale import generate, load
from enforcer.compiler import Compiler
from enforcer.model.cluster import ClusterState
from enforcer.model.loader import parse_object
from enforcer.model.objects import ModelObject, NetworkPolicy, Pod

NODE = "node-0"


def _spread(docs: list[dict[str, Any]], nodes: int) -> None:
    pods = [d for d in docs if d["kind"] == "Pod" and "nodeName" in d["spec"]]
    for i, doc in enumerate(pods):
        doc["spec"]["nodeName"] = f"node-{i % nodes}"


def _parse(doc: dict[str, Any]) -> ModelObject:
    obj = parse_object(doc, "bench")
    assert obj is not None
    return obj


def _pod_doc(template: dict[str, Any], serial: int, labels: dict[str, str]) -> dict[str, Any]:
    doc = copy.deepcopy(template)
    doc["metadata"].update(name=f"bench-{serial}", uid=f"bench-uid-{serial}", labels=labels)
    ip4 = f"10.200.{serial // 256 % 256}.{serial % 256}"
    doc["status"]["podIPs"] = [{"ip": ip4}, {"ip": f"fd00:200::{serial:x}"}]
    doc["status"]["podIP"] = ip4
    return doc


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "median_ms": statistics.median(ordered) * 1000,
        "p99_ms": p99 * 1000,
        "max_ms": ordered[-1] * 1000,
        "n": len(ordered),
    }


class _Timer:
    def __init__(self, state: ClusterState, compiler: Compiler) -> None:
        self.state, self.compiler = state, compiler
        self.endpoint_writes: list[int] = []
        self.identity_writes: list[int] = []

    def upsert(self, obj: ModelObject) -> float:
        t0 = time.perf_counter()
        self.state.upsert(obj)
        delta = self.compiler.on_upsert(obj)
        elapsed = time.perf_counter() - t0
        self.endpoint_writes.append(len(delta.endpoints))
        self.identity_writes.append(len(delta.identity_changes))
        return elapsed

    def remove(self, obj: Pod | NetworkPolicy) -> float:
        t0 = time.perf_counter()
        self.state.remove(type(obj).__name__, obj.namespace, obj.name)
        self.compiler.on_remove(obj)
        return time.perf_counter() - t0


def run(
    pods: int = 10_000,
    namespaces: int = 500,
    policies: int = 2_000,
    nodes: int = 100,
    events: int = 200,
    seed: int = 3,
    freeze: bool = True,
) -> dict[str, Any]:
    rng = random.Random(seed)
    docs = generate(pods, namespaces, policies)
    _spread(docs, nodes)
    state = load(docs)
    compiler = Compiler(state, NODE)
    gc.collect()
    t0 = time.perf_counter()
    first = compiler.full()
    full_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    relist = compiler.full()
    relist_s = time.perf_counter() - t0
    assert relist.is_empty(), "a relist of an unchanged state must change nothing"

    if freeze:
        # What the agent should do after its first sync: move the long-lived state out of the
        # collector's generations, so a collection does not walk every pod's objects (without
        # it, full collections show up as ~4 ms tails on any event).
        gc.freeze()
    timer = _Timer(state, compiler)
    pod_docs = [d for d in docs if d["kind"] == "Pod" and "nodeName" in d["spec"]]
    results: dict[str, list[float]] = {
        k: []
        for k in (
            "pod_add",
            "pod_add_new_class",
            "pod_delete",
            "label_change",
            "local_label_change",
            "policy_change",
            "namespace_relabel",
            "ipblock_add_remove",
        )
    }
    samples_by_kind: dict[str, Callable[[int], None]] = {}

    def pod_add(i: int) -> None:
        template = rng.choice(pod_docs)
        new = _parse(_pod_doc(template, i, dict(template["metadata"]["labels"])))
        results["pod_add"].append(timer.upsert(new))
        results["pod_delete"].append(timer.remove(new))  # type: ignore[arg-type]

    def pod_add_new_class(i: int) -> None:
        template = rng.choice(pod_docs)
        labels = {**template["metadata"]["labels"], "pod-template-hash": f"new{i}"}
        new = _parse(_pod_doc(template, i, labels))
        results["pod_add_new_class"].append(timer.upsert(new))
        timer.remove(new)  # type: ignore[arg-type]

    def relabel(pod: Pod, key: str) -> None:
        labels = dict(pod.labels)
        labels["version"] = "v2" if labels.get("version") == "v1" else "v1"
        results[key].append(timer.upsert(Pod(**{**pod.__dict__, "labels": labels})))

    def label_change(i: int) -> None:
        relabel(state.pods[rng.choice(sorted_pods)], "label_change")

    def local_label_change(i: int) -> None:
        relabel(state.pods[rng.choice(local_pods)], "local_label_change")

    def policy_change(i: int) -> None:
        old = state.policies[rng.choice(local_policies)]
        rules = tuple(
            type(r)(
                r.peers,
                tuple(
                    type(p)(
                        p.protocol,
                        p.port + 1 if isinstance(p.port, int) and p.port < 60000 else p.port,
                        None,
                    )
                    for p in r.ports
                )
                if r.ports
                else r.ports,
            )
            for r in old.ingress
        )
        results["policy_change"].append(
            timer.upsert(
                NetworkPolicy(
                    old.namespace,
                    old.name,
                    old.uid,
                    old.pod_selector,
                    old.policy_types,
                    rules,
                    old.egress,
                )
            )
        )

    def namespace_relabel(i: int) -> None:
        ns = state.namespaces[rng.choice(ns_names)]
        labels = dict(ns.labels)
        labels["env"] = "dev" if labels.get("env") != "dev" else "prod"
        results["namespace_relabel"].append(timer.upsert(type(ns)(ns.name, labels, ns.uid)))

    def ipblock_add_remove(i: int) -> None:
        # Rare path: a new ipBlock re-partitions the address space and reclassifies the pod
        # IPs inside it (here a /20 of pods), then goes away again.
        ns = state.pods[rng.choice(local_pods)].namespace
        base = rng.randrange(0, max(1, pods // 4096)) * 16
        block = {"cidr": f"10.0.{base}.0/20", "except": [f"10.0.{base}.0/24"]}
        new = _parse(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": f"bench-cidr-{i}", "namespace": ns},
                "spec": {"podSelector": {}, "ingress": [{"from": [{"ipBlock": block}]}]},
            }
        )
        results["ipblock_add_remove"].append(timer.upsert(new) + timer.remove(new))  # type: ignore[arg-type]

    sorted_pods = sorted(k for k, p in state.pods.items() if p.node_name)
    local_pods = sorted(compiler.local_endpoints())
    local_policies = sorted(
        k
        for k, p in state.policies.items()
        if p.ingress
        and any(
            state.policies_selecting(e) and p in state.policies_selecting(e) for e in local_pods
        )
    )
    ns_names = sorted(state.namespaces)
    samples_by_kind = {
        "pod_add": pod_add,
        "pod_add_new_class": pod_add_new_class,
        "label_change": label_change,
        "local_label_change": local_label_change,
        "policy_change": policy_change,
        "namespace_relabel": namespace_relabel,
    }
    for i in range(events):
        for fn in samples_by_kind.values():
            fn(i)
        if i % 10 == 0:
            ipblock_add_remove(i)

    return {
        "pods": pods,
        "namespaces": namespaces,
        "policies": policies,
        "node": NODE,
        "local_endpoints": len(local_pods),
        "identities": compiler.identity_count(),
        "identity_map_entries": len(compiler.identities()),
        "policy_entries_local": sum(len(p.entries) for p in compiler.policies().values()),
        "full_s": full_s,
        "full_identity_writes": len(first.identity_changes),
        "relist_s": relist_s,
        "events": {k: _stats(v) for k, v in results.items()},
        "max_endpoint_writes_per_event": max(timer.endpoint_writes),
        "gc_frozen": freeze,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.compile_latency", description=__doc__.split("\n\n")[0])
    p.add_argument("--pods", type=int, default=10_000)
    p.add_argument("--namespaces", type=int, default=500)
    p.add_argument("--policies", type=int, default=2_000)
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--events", type=int, default=200)
    p.add_argument("--no-gc-freeze", action="store_true", help="do not gc.freeze() after full()")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    r = run(
        args.pods,
        args.namespaces,
        args.policies,
        args.nodes,
        args.events,
        freeze=not args.no_gc_freeze,
    )
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(
        f"compiler: {r['pods']} pods, {r['namespaces']} namespaces, {r['policies']} policies; "
        f"{r['local_endpoints']} local endpoints on {r['node']}\n"
        f"  identities {r['identities']}, identity-map entries {r['identity_map_entries']}, "
        f"local policy entries {r['policy_entries_local']}\n"
        f"  full():              {r['full_s'] * 1000:8.1f} ms   (target < 5000 ms)\n"
        f"  relist (no change):  {r['relist_s'] * 1000:8.1f} ms"
    )
    for kind, s in r["events"].items():
        print(
            f"  {kind:20s} median {s['median_ms']:6.3f} ms  p99 {s['p99_ms']:6.3f} ms  "
            f"max {s['max_ms']:6.3f} ms  (n={s['n']})"
        )
    print(f"  peak RSS (state + compiler + generator input): {r['peak_rss_mb']:.0f} MB")
    print(f"  gc.freeze() after full(): {r['gc_frozen']}")
    print("  target: a single pod event < 5 ms of compute")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
