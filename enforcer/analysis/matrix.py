"""Reachability matrices: may each pod open a new connection to each other pod?

The JSON form is a stable contract shared with the lab's `probe --check`:
    {"port": 80, "protocol": "TCP", "matrix": {"x/a": {"x/a": true, "x/b": false}}}
rows are sources, columns destinations, keys `namespace/pod`. Several ports make a list of
such objects.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from enforcer.model.cluster import ClusterState
from enforcer.model.evaluate import PairEvaluator

Matrix = dict[str, dict[str, bool]]


def reachability(
    state: ClusterState,
    port: int,
    protocol: str,
    family: int | None = None,
    pods: Iterable[str] | None = None,
) -> Matrix:
    """Verdicts between all endpoint pods (or the given pod keys) on one port/protocol."""
    keys = sorted(pods) if pods is not None else state.endpoint_keys()
    pairs = PairEvaluator(state, family)
    return {
        src: {dst: pairs.verdict(src, dst, port, protocol).allowed for dst in keys} for src in keys
    }


def declared_ports(state: ClusterState, protocol: str | None = None) -> list[tuple[int, str]]:
    """(port, protocol) pairs any endpoint pod declares, sorted; one protocol if given."""
    found = {
        (p.port, p.protocol)
        for key in state.endpoint_keys()
        for p in state.pods[key].ports
        if protocol is None or p.protocol == protocol
    }
    return sorted(found, key=lambda pp: (pp[0], pp[1]))


def matrix_document(port: int, protocol: str, matrix: Matrix) -> dict[str, Any]:
    return {"port": port, "protocol": protocol, "matrix": matrix}


def render_json(documents: dict[str, Any] | list[dict[str, Any]]) -> str:
    return json.dumps(documents, indent=2)


def parse_json(text: str) -> list[tuple[int, str, Matrix]]:
    """Read one matrix document or a list of them back (for comparisons in the lab)."""
    data = json.loads(text)
    docs = data if isinstance(data, list) else [data]
    return [(int(d["port"]), str(d["protocol"]), d["matrix"]) for d in docs]


def diff(
    expected: Mapping[str, Mapping[str, bool]], actual: Matrix
) -> list[tuple[str, str, bool, bool | None]]:
    """Cells where `actual` differs from `expected`: (from, to, expected, actual or None)."""
    out = []
    for src, row in sorted(expected.items()):
        for dst, want in sorted(row.items()):
            got = actual.get(src, {}).get(dst)
            if got != want:
                out.append((src, dst, want, got))
    return out
