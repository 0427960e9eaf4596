"""What the policy model says about the objects read back from the cluster (the same model
`enforcer analyze` prints), keyed by logical pod names."""

from __future__ import annotations

from typing import Any

from enforcer.analysis.matrix import reachability
from enforcer.model.cluster import state_from
from enforcer.model.parse import parse_object

Matrix = dict[str, dict[str, bool]]


def model_matrix(
    objects: list[dict[str, Any]], pod_keys: list[str], port: int, protocol: str, family: int
) -> Matrix:
    """Verdicts between the given pods ('ns/pod', real names) from the cluster's objects."""
    parsed = [parse_object(obj, origin="cluster") for obj in objects]
    state = state_from([p for p in parsed if p is not None])
    return reachability(state, port, protocol, family=family, pods=pod_keys)
