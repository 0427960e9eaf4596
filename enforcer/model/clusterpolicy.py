"""Cluster-scoped policies (SIG Network's Network Policy API, `policy.networking.k8s.io`) in
one internal model.

Three kinds map onto `ClusterPolicy`:

- `ClusterNetworkPolicy` v1alpha2, `spec.tier` Admin or Baseline, priority 0-1000;
- `AdminNetworkPolicy` v1alpha1: the Admin tier, its priority; `Allow` reads as Accept;
- `BaselineAdminNetworkPolicy` v1alpha1 (one per cluster, named `default`): the Baseline tier,
  without a priority; it comes after every Baseline-tier ClusterNetworkPolicy.

Evaluation, per direction (a connection needs the source's egress and the destination's
ingress): the Admin tier's policies that select the pod, by priority (lower first), each
policy's rules in written order; the first rule that matches decides: Accept, Deny, or Pass
(skip the rest of the tier). Then NetworkPolicy, if some policy isolates the pod in that
direction (its allow-list decides). Then the Baseline tier, the same way. Then allow.

Equal priorities within a tier are undefined upstream (either policy may apply): here the
order is `sort_key` (priority, then name, then kind: ClusterNetworkPolicy before
AdminNetworkPolicy), the same on every node, and `lint` warns when two such policies select
the same pod.

`domainNames` peers need DNS inspection, which the model does not do: such a peer matches
nothing (an Accept through it allows nothing extra, a Deny denies nothing); lint says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from enforcer.model.objects import EGRESS, INGRESS, IPNetwork, LabelSelector

API_GROUP = "policy.networking.k8s.io"
V1ALPHA2 = f"{API_GROUP}/v1alpha2"
V1ALPHA1 = f"{API_GROUP}/v1alpha1"
KIND_CLUSTER_NETWORK_POLICY = "ClusterNetworkPolicy"
KIND_ADMIN_NETWORK_POLICY = "AdminNetworkPolicy"
KIND_BASELINE_ADMIN_NETWORK_POLICY = "BaselineAdminNetworkPolicy"
CLUSTER_POLICY_KINDS = (
    KIND_CLUSTER_NETWORK_POLICY,
    KIND_ADMIN_NETWORK_POLICY,
    KIND_BASELINE_ADMIN_NETWORK_POLICY,
)
CLUSTER_POLICY_API = {
    KIND_CLUSTER_NETWORK_POLICY: V1ALPHA2,
    KIND_ADMIN_NETWORK_POLICY: V1ALPHA1,
    KIND_BASELINE_ADMIN_NETWORK_POLICY: V1ALPHA1,
}

ADMIN = "Admin"
BASELINE = "Baseline"
TIERS = (ADMIN, BASELINE)
ACCEPT = "Accept"
DENY = "Deny"
PASS = "Pass"

MIN_PRIORITY = 0
MAX_PRIORITY = 1000

def is_cluster_policy(obj: Any) -> bool:
    """A raw object of one of the three kinds, in its API version."""
    return isinstance(obj, Mapping) and (
        CLUSTER_POLICY_API.get(str(obj.get("kind"))) == obj.get("apiVersion")
    )


@dataclass(frozen=True)
class NamespacedPods:
    """`pods`: pods matching podSelector in namespaces matching namespaceSelector."""

    namespace_selector: LabelSelector
    pod_selector: LabelSelector


@dataclass(frozen=True)
class Subject:
    """The pods a policy applies to: exactly one of `namespaces` and `pods`."""

    namespaces: LabelSelector | None = None
    pods: NamespacedPods | None = None


@dataclass(frozen=True)
class ClusterPeer:
    """One `from`/`to` item: exactly one field is set."""

    namespaces: LabelSelector | None = None
    pods: NamespacedPods | None = None
    networks: tuple[IPNetwork, ...] = ()
    nodes: LabelSelector | None = None
    domain_names: tuple[str, ...] = ()

    @property
    def field(self) -> str:
        for name, value in (
            ("namespaces", self.namespaces),
            ("pods", self.pods),
            ("networks", self.networks),
            ("nodes", self.nodes),
            ("domainNames", self.domain_names),
        ):
            if value:
                return name
        return ""


@dataclass(frozen=True)
class ClusterPort:
    """One `protocols` (v1alpha2) or `ports` (v1alpha1) item: a protocol with a port range
    (start == end for one port; None for every port), or a named port, resolved on the
    destination pod by name (any protocol it declares under that name)."""

    protocol: str | None = None  # TCP, UDP, SCTP; None only with `named`
    start: int | None = None
    end: int | None = None
    named: str | None = None


@dataclass(frozen=True)
class ClusterRule:
    name: str
    action: str  # ACCEPT, DENY or PASS (v1alpha1 Allow reads as Accept)
    peers: tuple[ClusterPeer, ...]
    ports: tuple[ClusterPort, ...] | None = None  # None: all traffic


@dataclass(frozen=True)
class ClusterPolicy:
    kind: str
    name: str
    tier: str
    priority: int | None  # None: a BaselineAdminNetworkPolicy
    subject: Subject
    ingress: tuple[ClusterRule, ...] = ()
    egress: tuple[ClusterRule, ...] = ()
    uid: str = ""

    @property
    def key(self) -> str:
        """Unique among cluster policies: the kind and the name (an AdminNetworkPolicy and a
        ClusterNetworkPolicy may share a name)."""
        return f"{self.kind}/{self.name}"

    def rules(self, direction: str) -> tuple[ClusterRule, ...]:
        if direction not in (INGRESS, EGRESS):
            raise ValueError(f"direction must be {INGRESS} or {EGRESS}")
        return self.ingress if direction == INGRESS else self.egress

    def sort_key(self) -> tuple[int, str, int]:
        """The evaluation order within a tier: priority (a BaselineAdminNetworkPolicy after
        every priority), then name, then kind."""
        priority = MAX_PRIORITY + 1 if self.priority is None else self.priority
        return (priority, self.name, CLUSTER_POLICY_KINDS.index(self.kind))

    def describe(self) -> str:
        """`admin policy NAME (priority P)`, `baseline policy NAME (priority P)`, or the v1alpha1
        kind and name."""
        if self.kind == KIND_CLUSTER_NETWORK_POLICY:
            what = f"{self.tier.lower()} policy {self.name}"
        else:
            what = f"{self.kind} {self.name}"
        return what if self.priority is None else f"{what} (priority {self.priority})"
