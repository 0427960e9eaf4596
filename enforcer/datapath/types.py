"""The contract between the (pure) compiler and the datapath writer.

The compiler turns cluster state into two things the datapath stores:
- identities: IP prefix -> peer identity number (an LPM trie in the kernel);
- per-endpoint policies: complete allow tables, written atomically as one generation.
Nothing here touches the kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

IPNetwork = IPv4Network | IPv6Network
IPAddress = IPv4Address | IPv6Address


class Direction(IntEnum):
    """Direction as seen by the endpoint (the local pod)."""

    INGRESS = 0  # to the pod: tc egress hook of the host-side veth
    EGRESS = 1  # from the pod: tc ingress hook of the host-side veth


# Reserved identities. Real peer identities start at FIRST_IDENTITY and are never reused
# while a policy generation may still name them.
IDENTITY_ANY = 0  # in a policy entry: any peer (an empty or missing from/to)
IDENTITY_WORLD = 1  # an address no identity prefix covers
FIRST_IDENTITY = 16

PROTO_ANY = 0  # in a policy entry: any protocol (a rule without ports)
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58
PROTO_SCTP = 132
PROTOCOL_NUMBERS = {"TCP": PROTO_TCP, "UDP": PROTO_UDP, "SCTP": PROTO_SCTP}


@dataclass(frozen=True, order=True)
class PolicyEntry:
    """One allow entry: traffic in `direction` with the peer `peer` on protocol/port range.

    protocol PROTO_ANY means every protocol and port (port_lo/port_hi are then ignored);
    a port range of 0..65535 means every port of that protocol.
    """

    direction: Direction
    peer: int
    protocol: int
    port_lo: int = 0
    port_hi: int = 65535


@dataclass(frozen=True, order=True)
class RuleOrigin:
    """Rule `index` (0-based, as written) of policy `policy` (namespace/name), in the
    direction of the entry it produced."""

    policy: str
    index: int


@dataclass(frozen=True)
class EndpointPolicy:
    """A local pod's complete policy. A direction that is not isolated allows everything.

    What flows report comes with it, so it changes in the same generation as the tables:
    `origins` says which rules produced each entry (the kernel carries an id of each table
    entry's rule set, lib/maps.h pol_val), `isolating_*` which policies isolate a direction
    (what a default deny is attributed to), and `audit` makes what the tables deny pass and
    be reported as audit instead (never part of the tables themselves)."""

    ingress_isolated: bool
    egress_isolated: bool
    entries: frozenset[PolicyEntry] = field(default_factory=frozenset)
    origins: frozenset[tuple[PolicyEntry, RuleOrigin]] = frozenset()
    isolating_ingress: tuple[str, ...] = ()
    isolating_egress: tuple[str, ...] = ()
    audit: bool = False
    # Deny entries (cluster-scoped tiers, enforcer/compiler/tiers.py). With them an isolated
    # direction reads as the kernel's lookup does: for a peer, its own most specific entry
    # (a port range before an any-protocol entry) decides, allow or deny; a peer none of whose
    # own entries matches gets the wildcard identity's most specific one; none: denied.
    # Without denies that is the union of the peer's and the wildcard's allows. Their origins
    # are in `origins` too (what a drop is attributed to).
    denies: frozenset[PolicyEntry] = field(default_factory=frozenset)

    def isolating(self, direction: Direction) -> tuple[str, ...]:
        return self.isolating_ingress if direction == Direction.INGRESS else self.isolating_egress

    @classmethod
    def allow_all(cls) -> EndpointPolicy:
        return cls(ingress_isolated=False, egress_isolated=False)


class DropReason(IntEnum):
    """Why a packet was dropped (codes are stable: metrics and events carry them)."""

    SPOOFED_SOURCE = 132  # from a pod, not from its own address (Cilium's DROP_INVALID_SIP)
    POLICY_DENIED = 133  # Cilium's code for the same thing
    UNKNOWN_ENDPOINT = 140  # interface attached before its pod is known
    TRUNCATED = 141  # header shorter than its protocol needs, bogus lengths, IHL < 5
    FRAGMENT_UNTRACKED = 142  # non-first fragment whose first fragment was not seen
    IPV6_EXT_HEADER = 143  # extension header outside the allow-list, or too many
    MAP_FULL = 144  # a table the program had to write was full (fail closed)
    UNSUPPORTED_L3 = 145  # an ethertype we cannot parse on an isolated endpoint
    FRAGMENT_OVERLAP = 146  # a later fragment reaching back into the L4 header (RFC 1858)
    FLOW_BUDGET = 147  # a pod's new flow past its budget (DatapathConfig.pod_flows_per_second)
    AUDIT = 150  # not dropped: policy denies it, but the endpoint is in audit mode

    @property
    def label(self) -> str:
        return self.name.lower()


# What the datapath reports back (read from the kernel's maps).


@dataclass(frozen=True)
class CounterRow:
    """Packets and bytes on one interface, direction and verdict (reason None: forwarded)."""

    ifindex: int
    direction: Direction
    reason: DropReason | None
    packets: int
    bytes: int


@dataclass(frozen=True)
class DropEvent:
    """One event from the kernel: a drop, or (reason None) an allowed new flow."""

    timestamp_ns: int
    ifindex: int
    endpoint_id: int
    direction: Direction
    reason: DropReason | None
    peer_identity: int
    protocol: int
    src: IPAddress
    dst: IPAddress
    sport: int  # ICMP echo: the id (request) or 0
    dport: int  # ICMP echo: the id (reply) or 0
    tcp_flags: int
    # The id of the rule set of the table entry that allowed it (0: none; policykeys).
    rule_set: int = 0


@dataclass(frozen=True)
class EndpointState:
    """An endpoint as the kernel holds it (for reconcile after a restart)."""

    ifindex: int
    endpoint_id: int
    generation: int
    policy: EndpointPolicy  # normalised: see enforcer.datapath.policykeys.normalize
