"""What one compiler step changed: exactly what the datapath writer must apply."""

from __future__ import annotations

from dataclasses import dataclass, field

from enforcer.datapath.types import EndpointPolicy, IPNetwork
from enforcer.model.objects import IPAddress


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

    def is_empty(self) -> bool:
        return not (
            self.identity_changes
            or self.endpoints
            or self.removed_endpoints
            or self.ip_owner_changes
        )
