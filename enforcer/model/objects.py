"""The Kubernetes objects the model understands, after API-server defaulting.

Frozen and hashable, so they can be shared between the cluster state, the compiler and tests.
Mappings are stored as `FrozenLabels` (an immutable, hashable mapping); plain dicts given to a
constructor are converted.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
PROTOCOLS = ("TCP", "UDP", "SCTP")
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
INGRESS = "Ingress"
EGRESS = "Egress"
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
# The project's API group: its own kinds (StagedNetworkPolicy, the CRD in daemonset/) and, as a
# suffix, its annotations.
ENFORCER_API_GROUP = "enforcer.dev"
STAGED_POLICY_API = f"{ENFORCER_API_GROUP}/v1alpha1"
# Audit mode, per namespace or pod (the pod's wins): policy is judged as enforced, but what it
# denies passes and is reported as audit. Any other value enforces (fail closed).
POLICY_MODE_ANNOTATION = f"policy.{ENFORCER_API_GROUP}/mode"
POLICY_MODES = ("enforce", "audit")
# A pod's service account as a label every selector can match: the model sets it from
# spec.serviceAccountName (`default` when absent, as the API server's admission does) and
# overwrites a label of that key written on the pod, so no pod can claim another's account.
# On a Namespace it is an ordinary label.
SERVICE_ACCOUNT_LABEL = f"policy.{ENFORCER_API_GROUP}/serviceaccount"
# A pod carrying this annotation (its value: the reason) is isolated completely, above every
# policy: `enforcer quarantine`. In the pod's own object, so it survives agent restarts.
QUARANTINE_ANNOTATION = f"policy.{ENFORCER_API_GROUP}/quarantine"
DEFAULT_SERVICE_ACCOUNT = "default"

KIND_NAMESPACE = "Namespace"
KIND_POD = "Pod"
KIND_NETWORK_POLICY = "NetworkPolicy"
# The project's own kind: a NetworkPolicy spec that is previewed, never enforced.
KIND_STAGED_NETWORK_POLICY = "StagedNetworkPolicy"


class FrozenLabels(Mapping[str, str]):
    """An immutable, hashable str -> str mapping (labels, matchLabels)."""

    __slots__ = ("_data", "_hash")

    def __init__(self, data: Mapping[str, str] | None = None) -> None:
        self._data: dict[str, str] = dict(data or {})
        self._hash: int | None = None

    def __getitem__(self, key: str) -> str:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    # Direct dict calls: selector matching runs these in hot loops.
    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def items(self) -> ItemsView[str, str]:
        return self._data.items()

    def keys(self) -> KeysView[str]:
        return self._data.keys()

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._data == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenLabels({self._data!r})"


EMPTY_LABELS = FrozenLabels()


def _freeze(obj: Any, name: str) -> None:
    """Convert a mapping field of a frozen dataclass to FrozenLabels in place."""
    value = getattr(obj, name)
    if not isinstance(value, FrozenLabels):
        object.__setattr__(obj, name, FrozenLabels(value))


@dataclass(frozen=True)
class LabelRequirement:
    key: str
    operator: str  # In, NotIn, Exists, DoesNotExist
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            # A missing key satisfies NotIn, as in Kubernetes.
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        return False  # unknown operators are rejected by the loader; never match (fail closed)


@dataclass(frozen=True)
class LabelSelector:
    """A label selector. The empty selector (no labels, no expressions) selects everything."""

    match_labels: Mapping[str, str] = field(default_factory=FrozenLabels)
    match_expressions: tuple[LabelRequirement, ...] = ()

    def __post_init__(self) -> None:
        _freeze(self, "match_labels")

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, value in self.match_labels.items():
            if labels.get(key) != value:
                return False
        return all(req.matches(labels) for req in self.match_expressions)

    def is_empty(self) -> bool:
        return not self.match_labels and not self.match_expressions


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: Mapping[str, str] = field(default_factory=FrozenLabels)
    uid: str = ""
    policy_mode: str | None = None  # POLICY_MODE_ANNOTATION; None: the node's default

    def __post_init__(self) -> None:
        # The API server always sets this label to the name (users cannot override it).
        labels = dict(self.labels)
        labels[NAMESPACE_NAME_LABEL] = self.name
        object.__setattr__(self, "labels", FrozenLabels(labels))


def pending_namespace(name: str) -> Namespace:
    """The identity of a namespace known only from its pods' namespace field."""
    return Namespace(name=name)


@dataclass(frozen=True)
class ContainerPort:
    name: str | None
    port: int
    protocol: str = "TCP"


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    uid: str = ""
    labels: Mapping[str, str] = field(default_factory=FrozenLabels)
    ips: tuple[IPAddress, ...] = ()
    node_name: str | None = None
    host_network: bool = False
    phase: str = "Running"
    ports: tuple[ContainerPort, ...] = ()
    # The controller that owns the pod (metadata.ownerReferences with controller: true), as
    # (kind, name): what flows and `advise` group pods by (enforcer.model.workloads).
    owner: tuple[str, str] | None = None
    policy_mode: str | None = None  # POLICY_MODE_ANNOTATION; None: its namespace's
    quarantine: str | None = None  # QUARANTINE_ANNOTATION's reason; None: not quarantined

    def __post_init__(self) -> None:
        _freeze(self, "labels")

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def is_endpoint(self) -> bool:
        """Pods the policy applies to and that selectors can match."""
        return not self.host_network and self.phase not in TERMINAL_PHASES and bool(self.ips)

    def ips_of_family(self, family: int | None) -> tuple[IPAddress, ...]:
        """The pod's IPs of one IP version (4 or 6), or all of them for None."""
        if family is None:
            return self.ips
        return tuple(ip for ip in self.ips if ip.version == family)

    def resolve_named_port(self, name: str, protocol: str) -> tuple[int, ...]:
        """Port numbers this pod declares under `name` with `protocol` (name AND protocol)."""
        return tuple(p.port for p in self.ports if p.name == name and p.protocol == protocol)


@dataclass(frozen=True)
class IPBlock:
    cidr: IPNetwork
    except_: tuple[IPNetwork, ...] = ()

    def contains(self, ip: IPAddress) -> bool:
        if ip.version != self.cidr.version or ip not in self.cidr:
            return False
        return not any(ip in ex for ex in self.except_)


@dataclass(frozen=True)
class PolicyPeer:
    """One `from`/`to` item. Selectors in one item are ANDed; ipBlock stands alone."""

    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IPBlock | None = None


@dataclass(frozen=True)
class PolicyPort:
    """One `ports` item. port None = every port of `protocol`; str = a named port."""

    protocol: str = "TCP"
    port: int | str | None = None
    end_port: int | None = None

    def matches_number(self, protocol: str, port: int) -> bool:
        """Numeric match only (named ports need the destination pod: see evaluate)."""
        if protocol != self.protocol:
            return False
        if self.port is None:
            return True
        if isinstance(self.port, str):
            return False
        return self.port <= port <= (self.end_port or self.port)


@dataclass(frozen=True)
class PolicyRule:
    """An ingress or egress rule. peers/ports None or empty mean all peers / all ports."""

    peers: tuple[PolicyPeer, ...] | None = None
    ports: tuple[PolicyPort, ...] | None = None


def default_policy_types(egress: tuple[PolicyRule, ...]) -> frozenset[str]:
    """API-server defaulting: Ingress always, Egress only when there are egress rules."""
    return frozenset({INGRESS, EGRESS}) if egress else frozenset({INGRESS})


@dataclass(frozen=True)
class NetworkPolicy:
    namespace: str
    name: str
    uid: str = ""
    pod_selector: LabelSelector = field(default_factory=LabelSelector)
    # Empty means "not given": __post_init__ applies the API server's defaulting.
    policy_types: frozenset[str] = frozenset()
    ingress: tuple[PolicyRule, ...] = ()
    egress: tuple[PolicyRule, ...] = ()
    # How the manifest was written (for lint); not part of the semantics or equality.
    policy_types_defaulted: bool = field(default=False, compare=False)
    egress_field_present: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        if not self.policy_types:
            object.__setattr__(self, "policy_types", default_policy_types(self.egress))
            object.__setattr__(self, "policy_types_defaulted", True)
        elif not isinstance(self.policy_types, frozenset):
            object.__setattr__(self, "policy_types", frozenset(self.policy_types))

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def rules(self, direction: str) -> tuple[PolicyRule, ...]:
        return self.ingress if direction == INGRESS else self.egress


ModelObject = Namespace | Pod | NetworkPolicy


def kind_of(obj: ModelObject) -> str:
    if isinstance(obj, Namespace):
        return KIND_NAMESPACE
    if isinstance(obj, Pod):
        return KIND_POD
    return KIND_NETWORK_POLICY
