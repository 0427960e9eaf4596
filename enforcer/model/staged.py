"""StagedNetworkPolicies as if applied: the state a preview judges by.

A staged policy previews a change of the policy with its namespace and name: it replaces that
enforced policy in the preview, or adds itself when there is none (Calico's staged semantics).
The enforced state is never touched.
"""

from __future__ import annotations

from collections.abc import Iterable

from enforcer.model.cluster import ClusterState
from enforcer.model.objects import NetworkPolicy


def as_if_applied(state: ClusterState, staged: Iterable[NetworkPolicy]) -> ClusterState:
    """A copy of `state` with the staged policies applied (same key: replaced)."""
    preview = state.copy()
    for policy in staged:
        preview.upsert(policy)  # upsert keys by namespace/name: a same-named policy is replaced
    return preview
