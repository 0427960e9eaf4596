"""One local endpoint's complete allow table, from the policies selecting it.

Each rule crosses its peer identities with its ports. Named ports resolve on the destination
pod by name AND protocol: for ingress that is the local pod itself; for egress it is the peer,
so a named egress port expands to the pod classes declaring it (with each class's own number)
and never matches a non-pod class or the world.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from enforcer.compiler.classes import ClassRegistry
from enforcer.compiler.peers import PeerKey, named_port_key, peer_key
from enforcer.datapath.types import (
    IDENTITY_ANY,
    PROTO_ANY,
    PROTOCOL_NUMBERS,
    Direction,
    EndpointPolicy,
    PolicyEntry,
    RuleOrigin,
)
from enforcer.model.objects import EGRESS, INGRESS, NetworkPolicy, Pod, PolicyRule

Members = Callable[[PeerKey], set[int]]

_DIRECTIONS = ((INGRESS, Direction.INGRESS), (EGRESS, Direction.EGRESS))


def endpoint_policy(
    pod: Pod,
    policies: Iterable[NetworkPolicy],
    registry: ClassRegistry,
    members: Members,
    audit: bool = False,
) -> tuple[EndpointPolicy, set[PeerKey]]:
    """The pod's policy and the peer keys it was built from (its dependencies)."""
    origins: set[tuple[PolicyEntry, RuleOrigin]] = set()
    uses: set[PeerKey] = set()
    isolating: dict[str, list[str]] = {INGRESS: [], EGRESS: []}
    for policy in policies:
        for name, direction in _DIRECTIONS:
            if name not in policy.policy_types:
                continue
            isolating[name].append(policy.key)
            for index, rule in enumerate(policy.rules(name)):
                produced: set[PolicyEntry] = set()
                _rule_entries(pod, policy, rule, direction, registry, members, produced, uses)
                origin = RuleOrigin(policy.key, index)
                origins.update((entry, origin) for entry in produced)
    return (
        EndpointPolicy(
            bool(isolating[INGRESS]),
            bool(isolating[EGRESS]),
            frozenset(entry for entry, _ in origins),
            frozenset(origins),
            tuple(sorted(isolating[INGRESS])),
            tuple(sorted(isolating[EGRESS])),
            audit=audit,
        ),
        uses,
    )


def _rule_entries(
    pod: Pod,
    policy: NetworkPolicy,
    rule: PolicyRule,
    direction: Direction,
    registry: ClassRegistry,
    members: Members,
    out: set[PolicyEntry],
    uses: set[PeerKey],
) -> None:
    peers: set[int] | None = None  # None: any peer
    if rule.peers:
        peers = set()
        for peer in rule.peers:
            key = peer_key(policy, peer)
            uses.add(key)
            peers |= members(key)
    targets: Iterable[int] = (IDENTITY_ANY,) if peers is None else peers
    if not rule.ports:
        out.update(PolicyEntry(direction, t, PROTO_ANY, 0, 65535) for t in targets)
        return
    for port in rule.ports:
        proto = PROTOCOL_NUMBERS[port.protocol]
        if port.port is None:
            out.update(PolicyEntry(direction, t, proto, 0, 65535) for t in targets)
        elif isinstance(port.port, int):
            hi = port.end_port or port.port
            out.update(PolicyEntry(direction, t, proto, port.port, hi) for t in targets)
        elif direction == Direction.INGRESS:
            # The destination is this pod: resolve on its own container ports.
            for number in pod.resolve_named_port(port.port, port.protocol):
                out.update(PolicyEntry(direction, t, proto, number, number) for t in targets)
        else:
            # The destination is the peer: only pod classes declaring the name resolve it.
            if peers is None:
                key = named_port_key(port.port, port.protocol)
                uses.add(key)
                candidates: Iterable[int] = members(key)
            else:
                candidates = peers
            for ident in candidates:
                cls = registry.get(ident)
                for number in cls.port_numbers(port.port, port.protocol):
                    out.add(PolicyEntry(direction, ident, proto, number, number))
