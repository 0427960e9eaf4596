"""What one compiler step changed: exactly what the datapath writer must apply."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from enforcer.datapath.types import EndpointPolicy, IPNetwork
from enforcer.model.objects import IPAddress


class AddressMove(NamedTuple):
    """A local endpoint's own address that keeps its owner and changes identity."""

    pod_key: str
    before: int
    after: int


@dataclass
class CompileDelta:
    # prefix -> new identity; None deletes the prefix
    identity_changes: dict[IPNetwork, int | None] = field(default_factory=dict)
    # local pod key -> its complete new policy (new endpoints and changed ones only)
    endpoints: dict[str, EndpointPolicy] = field(default_factory=dict)
    removed_endpoints: set[str] = field(default_factory=set)
    # IPs whose owning pod (key, UID) changed or went (and, in full(), came from nobody): flush
    # their conntrack
    ip_owner_changes: set[IPAddress] = field(default_factory=set)
    # identities that name addresses after this step and did not before, and the reverse
    # (plan_writes needs them to order writes; identity numbers are never reused)
    born_identities: frozenset[int] = frozenset()
    dead_identities: frozenset[int] = frozenset()
    # host prefix -> move, for the local endpoints' addresses (plan_writes: when two endpoints'
    # addresses move in one step, a connection between them could mix old and new halves)
    address_moves: dict[IPNetwork, AddressMove] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not (
            self.identity_changes
            or self.endpoints
            or self.removed_endpoints
            or self.ip_owner_changes
        )
