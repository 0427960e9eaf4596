"""What staged policies cost the agent: per flow record, and per change of the cluster.

    .venv/bin/python -m bench.staged_flows [--pods 1000 --namespaces 50 --policies 100]

A cluster from bench.model_scale is taken in by the agent's Intake; flow records between
random pods (both directions) are judged by the agent's StagedShadow (enforcer.agent.staged):
with nothing staged (the common case), and with a few staged policies (replacements of
enforced ones and new ones). Per change: a pod relabelled, with the preview kept incrementally,
against copying the state into a fresh preview (what StagedView does when the generation moves).
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.model_scale import generate
from enforcer.agent.intake import Intake
from enforcer.flows.record import FlowRecord
from enforcer.model.objects import STAGED_POLICY_API
from enforcer.model.staged import as_if_applied
from enforcer.sources.base import EventType, SourceEvent


def _event(etype: EventType, obj: dict[str, Any]) -> SourceEvent:
    return SourceEvent(etype, obj["kind"], obj, None)


def _per_call(fn: Callable[[], object], calls: int, repeats: int = 5) -> float:
    """Seconds per call, the median of `repeats` runs."""
    runs = []
    for _ in range(repeats):
        began = time.perf_counter()
        for _ in range(calls):
            fn()
        runs.append((time.perf_counter() - began) / calls)
    return statistics.median(runs)


def staged_docs(docs: list[dict[str, Any]], rng: random.Random, count: int) -> list[dict[str, Any]]:
    """Half replace an enforced policy with a narrower one (its first rule dropped), half add a
    default deny of ingress to a namespace."""
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    namespaces = [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"]
    out = []
    for i in range(count):
        if i % 2 == 0:
            doc = copy.deepcopy(rng.choice(policies))
            for direction in ("ingress", "egress"):
                if doc["spec"].get(direction):
                    doc["spec"][direction] = doc["spec"][direction][1:]
        else:
            doc = {"metadata": {"name": f"staged-deny-{i}", "namespace": rng.choice(namespaces)},
                   "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
        out.append({**doc, "apiVersion": STAGED_POLICY_API, "kind": "StagedNetworkPolicy"})
    return out


def run(pods: int, namespaces: int, policies: int, staged: int, records: int) -> dict[str, float]:
    rng = random.Random(7)
    docs = generate(pods, namespaces, policies)
    intake = Intake(lambda: "bench")
    for doc in docs:
        intake.apply(_event(EventType.ADDED, doc))
    state = intake.state
    keys = sorted(state.pods)
    flows = []
    for _ in range(records):
        src, dst = rng.choice(keys), rng.choice(keys)
        port = rng.choice([80, 443, 5432, 8080, 53])
        flows.append(FlowRecord(source=src, destination=dst, port=port, protocol="TCP",
                                direction=rng.choice(["ingress", "egress"]), verdict="allowed",
                                source_ip=str(state.pods[src].ips[0]),
                                destination_ip=str(state.pods[dst].ips[0])))
    shadow = intake.shadow
    out: dict[str, float] = {}
    it = iter(range(10**12))

    def judge() -> object:
        return shadow(flows[next(it) % len(flows)])

    out["record, nothing staged (us)"] = _per_call(judge, 200_000) * 1e6
    for doc in staged_docs(docs, rng, staged):
        intake.apply(_event(EventType.ADDED, doc))
    out["record, staged (us)"] = _per_call(judge, 5_000) * 1e6
    changed = sum(1 for f in flows if shadow(f).staged is not None)
    out["records a staged policy changes (%)"] = 100 * changed / len(flows)

    pod_docs = [d for d in docs if d["kind"] == "Pod"]
    flip = iter(range(10**12))

    def relabel() -> object:
        doc = copy.deepcopy(pod_docs[next(flip) % len(pod_docs)])
        doc["metadata"]["labels"]["bench"] = str(next(flip) % 2)
        return intake.apply(_event(EventType.MODIFIED, doc))

    out["change with staged, incremental (us)"] = _per_call(relabel, 2_000) * 1e6
    staged_now = list(intake.staged.values())
    out["preview copied from scratch (ms)"] = (
        _per_call(lambda: as_if_applied(state, staged_now), 5, repeats=3) * 1e3
    )
    for key in list(intake.staged):
        intake.remove(key)
    out["change, nothing staged (us)"] = _per_call(relabel, 2_000) * 1e6
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pods", type=int, default=1000)
    p.add_argument("--namespaces", type=int, default=50)
    p.add_argument("--policies", type=int, default=100)
    p.add_argument("--staged", type=int, default=6)
    p.add_argument("--records", type=int, default=2000)
    args = p.parse_args(argv)
    results = run(args.pods, args.namespaces, args.policies, args.staged, args.records)
    print(f"{args.pods} pods, {args.namespaces} namespaces, {args.policies} policies, "
          f"{args.staged} staged")
    for name, value in results.items():
        print(f"  {name:40s} {value:10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
