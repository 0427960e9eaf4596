"""The cluster-scoped tiers of one direction: which Admin or Baseline rule matches first.

Subjects and the `namespaces`/`pods` peers match endpoint pods only (never hostNetwork pods);
`networks` match addresses (a pod's too, of the connection's family); `nodes` match the IP
addresses of the Nodes their selector picks; `domainNames` match nothing (not enforced, see
enforcer.model.clusterpolicy). A rule without ports matches all traffic; a named port resolves
on the destination pod (ingress: the subject; egress: the peer pod), by name, for the
connection's protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from enforcer.model.cluster import ClusterState
from enforcer.model.clusterpolicy import (
    ACCEPT,
    DENY,
    ClusterPeer,
    ClusterPolicy,
    ClusterPort,
    ClusterRule,
    NamespacedPods,
)
from enforcer.model.objects import IPAddress, Pod


@dataclass(frozen=True)
class TierMatch:
    """The cluster-policy rule that matched a direction first in its tier."""

    tier: str
    kind: str
    policy: str  # the policy's name
    priority: int | None
    direction: str
    rule: int  # index in spec.ingress / spec.egress
    rule_name: str
    action: str  # Accept, Deny, Pass

    @property
    def field(self) -> str:
        return f"spec.{self.direction.lower()}[{self.rule}]"

    def describe(self) -> str:
        """e.g. `admin policy tenant-isolation (priority 10) ingress rule 2 'deny-others'`"""
        if self.kind == "ClusterNetworkPolicy":
            what = f"{self.tier.lower()} policy {self.policy}"
        else:
            what = f"{self.kind} {self.policy}"
        if self.priority is not None:
            what += f" (priority {self.priority})"
        name = f" '{self.rule_name}'" if self.rule_name else ""
        return f"{what} {self.direction.lower()} rule {self.rule}{name}"

    def verb(self) -> str:
        return {ACCEPT: "accepted", DENY: "denied"}.get(self.action, "passed")

    def to_dict(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "kind": self.kind,
            "policy": self.policy,
            "priority": self.priority,
            "rule": self.rule,
            "rule_name": self.rule_name,
            "field": self.field,
            "action": self.action,
        }


def selects(state: ClusterState, policy: ClusterPolicy, pod: Pod) -> bool:
    """Whether the policy's subject is this pod (endpoints only)."""
    if not state.is_endpoint(pod):
        return False
    subject = policy.subject
    if subject.namespaces is not None:
        return subject.namespaces.matches(state.namespace_identity(pod.namespace).labels)
    return subject.pods is not None and _pods_match(state, subject.pods, pod)


def _pods_match(state: ClusterState, pods: NamespacedPods, pod: Pod) -> bool:
    ns_labels = state.namespace_identity(pod.namespace).labels
    return pods.namespace_selector.matches(ns_labels) and pods.pod_selector.matches(pod.labels)


def tier_policies(state: ClusterState, pod: Pod, tier: str, direction: str) -> list[ClusterPolicy]:
    """The tier's policies with rules for `direction` that select the pod, in evaluation
    order (ClusterPolicy.sort_key)."""
    return sorted(
        (
            p
            for p in state.cluster_policies.values()
            if p.tier == tier and p.rules(direction) and selects(state, p, pod)
        ),
        key=ClusterPolicy.sort_key,
    )


def node_ips(state: ClusterState, peer: ClusterPeer) -> set[IPAddress]:
    if peer.nodes is None:
        return set()
    selector = peer.nodes
    return {ip for node in state.nodes.values() if selector.matches(node.labels)
            for ip in node.addresses}


def peer_matches(
    state: ClusterState, peer: ClusterPeer, pod: Pod | None, ips: tuple[IPAddress, ...]
) -> bool:
    """Whether the remote end (a pod, or addresses outside the pods) is this peer."""
    if peer.namespaces is not None:
        return pod is not None and state.is_endpoint(pod) and peer.namespaces.matches(
            state.namespace_identity(pod.namespace).labels)
    if peer.pods is not None:
        return pod is not None and state.is_endpoint(pod) and _pods_match(state, peer.pods, pod)
    if peer.networks:
        return any(ip.version == net.version and ip in net for ip in ips for net in peer.networks)
    if peer.nodes is not None:
        return bool(node_ips(state, peer).intersection(ips))
    return False  # domainNames: not enforced, matches nothing


def port_matches(cport: ClusterPort, port: int, protocol: str, dst_pod: Pod | None) -> bool:
    if cport.named is not None:
        return dst_pod is not None and port in dst_pod.resolve_named_port(cport.named, protocol)
    if cport.protocol != protocol:
        return False
    if cport.start is None or cport.end is None:
        return True
    return cport.start <= port <= cport.end


def rule_matches(
    state: ClusterState,
    rule: ClusterRule,
    pod: Pod | None,
    ips: tuple[IPAddress, ...],
    dst_pod: Pod | None,
    port: int,
    protocol: str,
) -> bool:
    if rule.ports is not None and not any(
        port_matches(p, port, protocol, dst_pod) for p in rule.ports
    ):
        return False
    return any(peer_matches(state, peer, pod, ips) for peer in rule.peers)


def first_match(
    state: ClusterState,
    policies: list[ClusterPolicy],
    direction: str,
    remote_pod: Pod | None,
    remote_ips: tuple[IPAddress, ...],
    dst_pod: Pod | None,
    port: int,
    protocol: str,
) -> TierMatch | None:
    """The first rule, in evaluation order, of these policies (already the pod's, sorted)
    that matches the connection; None when none does."""
    for policy in policies:
        for index, rule in enumerate(policy.rules(direction)):
            if rule_matches(state, rule, remote_pod, remote_ips, dst_pod, port, protocol):
                return TierMatch(
                    tier=policy.tier,
                    kind=policy.kind,
                    policy=policy.name,
                    priority=policy.priority,
                    direction=direction,
                    rule=index,
                    rule_name=rule.name,
                    action=rule.action,
                )
    return None

