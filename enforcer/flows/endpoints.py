"""Which pod of a ClusterState a flow record's source or destination is.

A record names a pod as `namespace/pod` (the pod it saw) and gives the address the flow used;
a peer outside the cluster is named by its address. Manifests and the cluster that recorded
the flow may disagree on names (a pod recreated under another name keeps its Deployment's
labels, not its name), so a name the state lacks falls back to the address.
"""

from __future__ import annotations

from ipaddress import ip_address

from enforcer.model.cluster import ClusterState


def resolve(state: ClusterState, name: str, ip: str = "") -> str | None:
    """The pod key `name` or `ip` stands for in `state`, or the address of a peer outside the
    cluster; None when a named pod is neither in the state nor at a pod's address there."""
    if name in state.pods:
        return name
    if _is_ip(name):
        # A pod's address is that pod; any other address is outside the cluster.
        return state.pods_by_ip(name) or name
    if ip and _is_ip(ip):
        return state.pods_by_ip(ip)
    return None


def _is_ip(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True
