"""A reference datapath for tests: what the kernel maps hold, looked up the way the TC
program does (LPM on the peer IP, then the endpoint's entries for that identity or ANY)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from enforcer.compiler import (
    CompileDelta,
    FlushConntrack,
    RemoveEndpoint,
    WriteIdentity,
    WritePolicy,
    WriteStep,
)
from enforcer.datapath.types import (
    IDENTITY_ANY,
    IDENTITY_WORLD,
    PROTO_ANY,
    PROTOCOL_NUMBERS,
    Direction,
    EndpointPolicy,
    IPNetwork,
)
from enforcer.model.objects import IPAddress


@dataclass
class Datapath:
    identities: dict[IPNetwork, int] = field(default_factory=dict)
    policies: dict[str, EndpointPolicy] = field(default_factory=dict)
    # Lookup caches (not state): the LPM index is dropped on every identity write.
    _lpm: dict | None = field(default=None, compare=False, repr=False)
    _indexed: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, identities: Mapping[IPNetwork, int], policies: Mapping[str, EndpointPolicy]):
        return cls(dict(identities), dict(policies))

    def copy(self) -> Datapath:
        return Datapath(dict(self.identities), dict(self.policies), _indexed=self._indexed)

    def apply(self, delta: CompileDelta) -> None:
        self._lpm = None
        for prefix, ident in delta.identity_changes.items():
            if ident is None:
                del self.identities[prefix]
            else:
                self.identities[prefix] = ident
        self.policies.update(delta.endpoints)
        for key in delta.removed_endpoints:
            del self.policies[key]

    def apply_step(self, step: WriteStep) -> None:
        if isinstance(step, WritePolicy):
            self.policies[step.pod_key] = step.policy
        elif isinstance(step, WriteIdentity):
            self._lpm = None
            if step.identity is None:
                del self.identities[step.prefix]
            else:
                self.identities[step.prefix] = step.identity
        elif isinstance(step, RemoveEndpoint):
            del self.policies[step.pod_key]
        else:
            assert isinstance(step, FlushConntrack)

    def lookup(self, ip: IPAddress) -> int:
        """Longest-prefix match, the way the kernel's LPM trie answers."""
        if self._lpm is None:
            self._lpm = {
                (
                    n.version,
                    n.prefixlen,
                    int(n.network_address) >> (n.max_prefixlen - n.prefixlen),
                ): i
                for n, i in self.identities.items()
            }
        value, top = int(ip), ip.max_prefixlen
        for length in range(top, -1, -1):
            ident = self._lpm.get((ip.version, length, value >> (top - length)))
            if ident is not None:
                return ident
        return IDENTITY_WORLD

    def _entries(self, policy: EndpointPolicy) -> dict[tuple[Direction, int], list]:
        index = self._indexed.get(id(policy))
        if index is None or index[0] is not policy:
            grouped: dict[tuple[Direction, int], list] = {}
            for entries, allow in ((policy.entries, True), (policy.denies, False)):
                for e in entries:
                    grouped.setdefault((e.direction, e.peer), []).append((e, allow))
            index = (policy, grouped)
            self._indexed[id(policy)] = index
        return index[1]

    def direction_allows(
        self, pod_key: str, direction: Direction, peer_ip: IPAddress, protocol: str, port: int
    ) -> bool:
        """The kernel's two LPM lookups: the peer's own entries, the most specific matching
        one deciding (a port range before an any-protocol entry, allow or deny); when none of
        them matches, the wildcard identity's the same way; none: denied."""
        policy = self.policies.get(pod_key)
        if policy is None:
            return False  # unknown endpoint: default deny
        isolated = (
            policy.ingress_isolated if direction == Direction.INGRESS else policy.egress_isolated
        )
        if not isolated:
            return True
        grouped = self._entries(policy)
        proto = PROTOCOL_NUMBERS[protocol]
        for peer in (self.lookup(peer_ip), IDENTITY_ANY):
            best: tuple[int, bool] | None = None
            for e, allow in grouped.get((direction, peer), ()):
                if e.protocol == proto and e.port_lo <= port <= e.port_hi:
                    rank = 2
                elif e.protocol == PROTO_ANY:
                    rank = 1
                else:
                    continue
                if best is None or rank > best[0] or (rank == best[0] and not allow):
                    best = (rank, allow)
            if best is not None:
                return best[1]
        return False

    def connection(
        self,
        src: str | None,
        src_ip: IPAddress,
        dst: str | None,
        dst_ip: IPAddress,
        protocol: str,
        port: int,
    ) -> bool:
        """A new connection; None is an address outside the node's endpoints."""
        if src is not None and src == dst:
            return True  # a pod may always reach itself (the program's own rule)
        egress = src is None or self.direction_allows(src, Direction.EGRESS, dst_ip, protocol, port)
        ingress = dst is None or self.direction_allows(
            dst, Direction.INGRESS, src_ip, protocol, port
        )
        return egress and ingress


PROBE_PORTS: tuple[tuple[str, int], ...] = (
    ("TCP", 80),
    ("TCP", 81),
    ("TCP", 8080),
    ("TCP", 443),
    ("UDP", 53),
    ("UDP", 81),
    ("SCTP", 80),
)


def verdicts(dp: Datapath, probes: Iterable[tuple]) -> dict[tuple, bool]:
    return {p: dp.connection(*p) for p in probes}
