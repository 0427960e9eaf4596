"""A kernel event named as a flow record: ends, verdict, and the policies that decided it."""

from __future__ import annotations

from ipaddress import ip_address

from enforcer.datapath.types import (
    PROTO_TCP,
    Direction,
    DropEvent,
    DropReason,
    EndpointPolicy,
    RuleOrigin,
)
from enforcer.flows.attribute import MonotonicToWall, flow_record
from enforcer.flows.record import RuleRef
from enforcer.model.objects import Pod

WEB = Pod("shop", "web-5d8-abcde", ips=(ip_address("10.0.0.1"),),
          labels={"pod-template-hash": "5d8"}, owner=("ReplicaSet", "web-5d8"))
API = Pod("shop", "api-0", ips=(ip_address("10.0.0.2"),), owner=("StatefulSet", "api"))
API_POLICY = EndpointPolicy(True, False, isolating_ingress=("shop/default-deny", "shop/api"))
RULES = {7: frozenset({RuleOrigin("shop/api", 1), RuleOrigin("shop/any", 0)})}


class Context:
    node = "node1"

    def pod_at(self, address: str) -> Pod | None:
        return {"10.0.0.1": WEB, "10.0.0.2": API}.get(address)

    def endpoint(self, endpoint_id: int) -> tuple[Pod, EndpointPolicy] | None:
        return (API, API_POLICY) if endpoint_id == 42 else None

    def rule_set(self, ident: int) -> frozenset[RuleOrigin] | None:
        return RULES.get(ident)

    def service_frontend(self, address: str, port: int, protocol: str) -> bool:
        return (address, port, protocol) == ("10.96.0.10", 53, "UDP")


def _event(reason: DropReason | None, rule_set: int = 0, dst: str = "10.0.0.2",
           protocol: int = PROTO_TCP) -> DropEvent:
    return DropEvent(timestamp_ns=0, ifindex=5, endpoint_id=42, direction=Direction.INGRESS,
                     reason=reason, peer_identity=20, protocol=protocol,
                     src=ip_address("10.0.0.1"), dst=ip_address(dst), sport=40000, dport=8080,
                     tcp_flags=2, rule_set=rule_set)


def test_an_allowed_flow_names_every_rule_of_its_entry() -> None:
    r = flow_record(_event(None, rule_set=7), Context(), 100.0)
    assert (r.source, r.destination, r.port, r.protocol) == ("shop/web-5d8-abcde", "shop/api-0",
                                                             8080, "TCP")
    assert (r.source_workload, r.destination_workload) == ("shop/web", "shop/api")
    assert (r.direction, r.verdict, r.reason, r.node) == ("ingress", "allowed", "forwarded",
                                                          "node1")
    assert r.policies == ("shop/any", "shop/api")
    assert set(r.rules) == {RuleRef("shop/api", "ingress", 1), RuleRef("shop/any", "ingress", 0)}
    assert (r.count, r.first_seen, r.last_seen) == (1, 100.0, 100.0)


def test_a_default_deny_names_the_policies_isolating_the_judging_pod() -> None:
    for reason, verdict in ((DropReason.POLICY_DENIED, "denied"), (DropReason.AUDIT, "audit")):
        r = flow_record(_event(reason), Context(), 1.0)
        assert (r.verdict, r.policies, r.rules) == (verdict, ("shop/default-deny", "shop/api"),
                                                    ())


def test_other_drops_name_no_policy_and_outside_peers_are_addresses() -> None:
    r = flow_record(_event(DropReason.SPOOFED_SOURCE, dst="203.0.113.7"), Context(), 1.0)
    assert (r.verdict, r.reason, r.policies) == ("denied", "spoofed_source", ())
    assert (r.destination, r.destination_workload) == ("203.0.113.7", "")


def test_an_allowed_flow_no_rule_decided_names_nothing() -> None:
    r = flow_record(_event(None, rule_set=0), Context(), 1.0)
    assert (r.verdict, r.policies, r.rules) == ("allowed", (), ())


def test_icmp_has_no_port() -> None:
    assert flow_record(_event(None, protocol=1), Context(), 1.0).port == 0


def test_kernel_times_become_wall_clock_times() -> None:
    to_wall = MonotonicToWall(wall=lambda: 1000.0, mono_ns=lambda: 5 * 10**9)
    assert to_wall(7 * 10**9) == 1002.0


def test_an_unjudged_egress_to_a_service_frontend_is_left_to_the_post_dnat_records() -> None:
    from dataclasses import replace

    from enforcer.flows.attribute import unjudged_service_flow

    to_dns = replace(_event(None, dst="10.96.0.10", protocol=17), direction=Direction.EGRESS,
                     dport=53)
    assert unjudged_service_flow(to_dns, Context())
    # Judged (an egress policy's rule decided it), denied, or not a frontend: reported.
    assert not unjudged_service_flow(replace(to_dns, rule_set=7), Context())
    assert not unjudged_service_flow(replace(to_dns, reason=DropReason.POLICY_DENIED), Context())
    assert not unjudged_service_flow(replace(to_dns, dport=54), Context())
    assert not unjudged_service_flow(replace(to_dns, direction=Direction.INGRESS), Context())


def test_a_cluster_policy_deny_names_its_rule() -> None:
    """A drop by a deny entry (a cluster-scoped Deny): the table in force names its rule, the
    peer's own entry before the wildcard's, the port range before the any-protocol entry; an
    audit pass carries the entry's rule set itself."""
    from enforcer.datapath.types import IDENTITY_ANY, PROTO_ANY, PolicyEntry

    deny = RuleOrigin("ClusterNetworkPolicy/tenants", 2)
    deny_port = PolicyEntry(Direction.INGRESS, 20, PROTO_TCP, 8000, 8100)
    everything_else = PolicyEntry(Direction.INGRESS, IDENTITY_ANY, PROTO_ANY, 0, 65535)
    policy = EndpointPolicy(True, False, entries=frozenset({everything_else}),
                            denies=frozenset({deny_port}),
                            origins=frozenset({(deny_port, deny)}),
                            isolating_ingress=("shop/api",))

    class Tiered(Context):
        def endpoint(self, endpoint_id: int) -> tuple[Pod, EndpointPolicy] | None:
            return (API, policy)

    r = flow_record(_event(DropReason.POLICY_DENIED), Tiered(), 1.0)
    assert (r.verdict, r.policies) == ("denied", ("ClusterNetworkPolicy/tenants",))
    assert r.rules == (RuleRef("ClusterNetworkPolicy/tenants", "ingress", 2),)
    # A drop no deny entry made (another peer: the wildcard allows; none: default deny).
    other = DropEvent(**{**_event(DropReason.POLICY_DENIED).__dict__, "peer_identity": 99})
    assert flow_record(other, Tiered(), 1.0).policies == ("shop/api",)
    RULES[9] = frozenset({deny})
    try:
        r = flow_record(_event(DropReason.AUDIT, rule_set=9), Context(), 1.0)
        assert (r.verdict, r.rules) == ("audit", (RuleRef("ClusterNetworkPolicy/tenants",
                                                          "ingress", 2),))
    finally:
        del RULES[9]
