"""The workload map: workloads and the peers outside the cluster they talk to, one edge per
(source, target, port, protocol, verdict), from flow records.

An end is its workload (`namespace/name`: every replica alike), or for a peer outside the
cluster its address. A record whose verdict staged policies would change counts under the
staged verdict (would-deny, would-allow): that is what the map is there to show. A flow judged
on both sides (the source's egress, the destination's ingress) counts once per side.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from enforcer.flows.record import FlowRecord

EdgeKey = tuple[str, str, int, str, str]  # source, target, port, protocol, verdict


@dataclass
class _Edge:
    count: int = 0
    policies: set[str] = field(default_factory=set)


def _end(endpoint: str, workload: str) -> dict[str, Any]:
    if workload:
        namespace, _, name = workload.partition("/")
        return {"id": workload, "label": name, "namespace": namespace, "kind": "workload"}
    return {"id": endpoint, "label": endpoint, "namespace": None, "kind": "external"}


def graph_document(records: Iterable[FlowRecord], namespaces: Iterable[str] = ()) -> dict[str, Any]:
    """{"nodes": [...], "edges": [...]}; with namespaces, only edges with an end in one."""
    wanted = set(namespaces)
    nodes: dict[str, dict[str, Any]] = {}
    edges: dict[EdgeKey, _Edge] = {}
    for record in records:
        source = _end(record.source, record.source_workload)
        target = _end(record.destination, record.destination_workload)
        if wanted and source["namespace"] not in wanted and target["namespace"] not in wanted:
            continue
        nodes.setdefault(source["id"], source)
        nodes.setdefault(target["id"], target)
        verdict = record.staged.verdict if record.staged is not None else record.verdict
        edge = edges.setdefault(
            (source["id"], target["id"], record.port, record.protocol, verdict), _Edge()
        )
        edge.count += record.count
        edge.policies.update(record.policies)
        if record.staged is not None:
            edge.policies.update(record.staged.policies)
    return {
        "nodes": sorted(nodes.values(), key=lambda n: n["id"]),
        "edges": [
            {
                "source": src, "target": dst, "port": port, "protocol": protocol,
                "verdict": verdict, "count": edge.count, "policies": sorted(edge.policies),
            }
            for (src, dst, port, protocol, verdict), edge in sorted(edges.items())
        ],
    }  # fmt: skip
