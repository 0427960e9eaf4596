"""The policy view: which policies exist, what one selects, what it allows (the model's
reachability matrices), and the recent flows it decided."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from enforcer.analysis.matrix import declared_ports, matrix_document, reachability
from enforcer.console.cluster import ClusterView
from enforcer.flows.filters import FlowFilter
from enforcer.flows.record import FlowRecord
from enforcer.flows.render import why
from enforcer.flows.store import FlowStore
from enforcer.model.cluster import ClusterState
from enforcer.model.objects import KIND_NETWORK_POLICY, KIND_STAGED_NETWORK_POLICY, NetworkPolicy
from enforcer.model.staged import as_if_applied

POLICY_FLOWS = 100  # the most recent records shown with a policy


class UnknownPolicy(LookupError):
    pass


def record_json(record: FlowRecord) -> dict[str, Any]:
    """A record as the API serves it: its JSON object, and why in words."""
    doc = record.to_json()
    doc["why"] = why(record)
    return doc


def policy_list(view: ClusterView) -> dict[str, Any]:
    def collect(state: ClusterState, staged: Mapping[str, NetworkPolicy]) -> list[dict[str, Any]]:
        entries = [
            (KIND_NETWORK_POLICY, p, state.pods_selected_by(p)) for p in state.policies.values()
        ] + [(KIND_STAGED_NETWORK_POLICY, p, state.pods_selected_by(p)) for p in staged.values()]
        return [
            {"key": p.key, "kind": kind, "selects": sorted(pods)}
            for kind, p, pods in sorted(entries, key=lambda e: (e[1].key, e[0]))
        ]

    return {"policies": view.read(collect)}


def policy_detail(
    view: ClusterView, store: FlowStore, namespace: str, name: str, kind: str
) -> dict[str, Any]:
    """One policy's document; UnknownPolicy when the view has none of that kind and name.
    A staged policy's matrices are the cluster's as if it were applied."""
    key = f"{namespace}/{name}"

    def snapshot(
        state: ClusterState, staged: Mapping[str, NetworkPolicy]
    ) -> tuple[list[str], list[tuple[int, str]], ClusterState]:
        policy = staged.get(key) if kind == KIND_STAGED_NETWORK_POLICY else state.policies.get(key)
        if policy is None:
            raise UnknownPolicy(f"no {kind} {key}")
        selects = state.pods_selected_by(policy)
        # Ingress: the ports its pods serve; egress: every port a pod serves, all of which its
        # pods' egress now goes through it for.
        ports = sorted({(p.port, p.protocol) for pod in selects for p in state.pods[pod].ports})
        if "Egress" in policy.policy_types:
            ports = sorted({*ports, *declared_ports(state)})
        # A copy (linear), so the matrices (quadratic) are made without holding up the source.
        judged = as_if_applied(state, [policy]) if kind == KIND_STAGED_NETWORK_POLICY else (
            state.copy())
        return sorted(selects), ports, judged

    selects, ports, judged = view.read(snapshot)
    # Rows sources, columns destinations, over every pod: what `enforcer analyze` prints.
    matrices = [
        matrix_document(port, protocol, reachability(judged, port, protocol))
        for port, protocol in ports
    ]
    return {
        "key": key,
        "kind": kind,
        "spec": view.spec(kind, namespace, name) or {},
        "selects": selects,
        "matrix": matrices,
        "flows": [record_json(r) for r in decided_by(store, key, kind)],
    }


def decided_by(
    store: FlowStore, key: str, kind: str, limit: int = POLICY_FLOWS
) -> list[FlowRecord]:
    """The most recent records naming the policy: among the deciding policies for a
    NetworkPolicy, among the staged ones for a StagedNetworkPolicy. Newest last."""
    records = store.query(FlowFilter(policies=(key,)))
    if kind == KIND_STAGED_NETWORK_POLICY:
        records = [r for r in records if r.staged is not None and key in r.staged.policies]
    else:
        records = [r for r in records if key in r.policies]
    return records[-limit:]
