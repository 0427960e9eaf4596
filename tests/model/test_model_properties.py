"""Property tests: random clusters and policies against an independent brute-force reference.

The reference below re-implements the rules from the Kubernetes documentation by scanning
everything, sharing no code with the indexed ClusterState or evaluate.
"""

from __future__ import annotations

from ipaddress import ip_address, ip_network
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enforcer.analysis.matrix import reachability
from enforcer.model.cluster import ClusterState
from enforcer.model.evaluate import evaluate
from enforcer.model.objects import (
    ContainerPort,
    IPBlock,
    LabelRequirement,
    LabelSelector,
    Namespace,
    NetworkPolicy,
    Pod,
    PolicyPeer,
    PolicyPort,
    PolicyRule,
)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAMESPACES = ["n1", "n2", "n3"]
PROBES = [(80, "TCP"), (8080, "TCP"), (53, "UDP"), (81, "TCP"), (81, "SCTP")]
CONTAINER_PORTS = [
    ContainerPort("http", 80, "TCP"),
    ContainerPort("http", 8080, "TCP"),
    ContainerPort("dns", 53, "UDP"),
    ContainerPort(None, 81, "TCP"),
]
BLOCKS = [
    ("10.0.0.0/29", ["10.0.0.0/31", "10.0.0.4/30"]),
    ("10.0.0.0/30", ["10.0.0.2/32"]),
    ("0.0.0.0/0", ["10.0.0.0/30"]),
    ("fd00::/126", ["fd00::/127"]),
]

labels_st = st.dictionaries(
    st.sampled_from(["app", "tier"]), st.sampled_from(["a", "b"]), max_size=2
)
requirement_st = st.one_of(
    st.builds(
        LabelRequirement,
        st.sampled_from(["app", "tier", "team"]),
        st.sampled_from(["In", "NotIn"]),
        st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=2, unique=True).map(tuple),
    ),
    st.builds(
        LabelRequirement,
        st.sampled_from(["app", "tier", "team"]),
        st.sampled_from(["Exists", "DoesNotExist"]),
    ),
)
selector_st = st.builds(
    LabelSelector,
    st.dictionaries(
        st.sampled_from(["app", "tier", "team", "kubernetes.io/metadata.name"]),
        st.sampled_from(["a", "b", "n1", "n2"]),
        max_size=2,
    ),
    st.lists(requirement_st, max_size=2).map(tuple),
)


@st.composite
def ip_block_st(draw: Any) -> IPBlock:
    cidr, excepts = draw(st.sampled_from(BLOCKS))
    chosen = draw(st.lists(st.sampled_from(excepts), max_size=len(excepts), unique=True))
    return IPBlock(ip_network(cidr), tuple(ip_network(e) for e in chosen))


peer_st = st.one_of(
    st.builds(PolicyPeer, pod_selector=selector_st),
    st.builds(PolicyPeer, namespace_selector=selector_st),
    st.builds(PolicyPeer, pod_selector=selector_st, namespace_selector=selector_st),
    st.builds(PolicyPeer, ip_block=ip_block_st()),
)


@st.composite
def policy_port_st(draw: Any) -> PolicyPort:
    protocol = draw(st.sampled_from(["TCP", "UDP", "SCTP"]))
    port = draw(st.sampled_from([None, 80, 53, 8079, "http", "dns"]))
    end = draw(st.sampled_from([None, 81, 8080])) if isinstance(port, int) else None
    if end is not None and end < port:  # type: ignore[operator]
        end = None
    return PolicyPort(protocol, port, end)


rule_st = st.builds(
    PolicyRule,
    st.one_of(st.none(), st.lists(peer_st, min_size=1, max_size=2).map(tuple)),
    st.one_of(st.none(), st.lists(policy_port_st(), min_size=1, max_size=2).map(tuple)),
)


@st.composite
def policy_st(draw: Any, name: str) -> NetworkPolicy:
    types = draw(st.sampled_from([(), ("Ingress",), ("Egress",), ("Ingress", "Egress")]))
    return NetworkPolicy(
        namespace=draw(st.sampled_from(NAMESPACES)),
        name=name,
        pod_selector=draw(selector_st),
        policy_types=frozenset(types),
        ingress=tuple(draw(st.lists(rule_st, max_size=2))),
        egress=tuple(draw(st.lists(rule_st, max_size=2))),
    )


@st.composite
def pod_st(draw: Any, index: int) -> Pod:
    ips = [ip_address(f"10.0.0.{index}")]
    if draw(st.booleans()):
        ips.append(ip_address(f"fd00::{index}"))
    return Pod(
        namespace=draw(st.sampled_from(NAMESPACES)),
        name=f"p{index}",
        labels=draw(labels_st),
        ips=tuple(ips),
        host_network=draw(st.sampled_from([False] * 6 + [True])),
        phase=draw(st.sampled_from(["Running"] * 6 + ["Succeeded", "Pending"])),
        ports=tuple(draw(st.lists(st.sampled_from(CONTAINER_PORTS), max_size=2, unique=True))),
    )


@st.composite
def cluster_st(draw: Any) -> list[Any]:
    namespaces = [
        Namespace(n, draw(st.dictionaries(st.just("team"), st.sampled_from(["a", "b"]))))
        for n in NAMESPACES
        if draw(st.booleans())  # the others are pending: known only from pods
    ]
    pods = [draw(pod_st(i)) for i in range(draw(st.integers(1, 6)))]
    policies = [draw(policy_st(f"np{i}")) for i in range(draw(st.integers(0, 4)))]
    return [*namespaces, *pods, *policies]


# --- the independent reference -----------------------------------------------------------------


def ref_endpoint(pod: Pod) -> bool:
    return not pod.host_network and pod.phase not in ("Succeeded", "Failed") and len(pod.ips) > 0


def ref_selects(sel: LabelSelector, labels: dict[str, str]) -> bool:
    for k, v in sel.match_labels.items():
        if labels.get(k) != v:
            return False
    for e in sel.match_expressions:
        present = e.key in labels
        if e.operator == "In" and not (present and labels[e.key] in e.values):
            return False
        if e.operator == "NotIn" and present and labels[e.key] in e.values:
            return False
        if e.operator == "Exists" and not present:
            return False
        if e.operator == "DoesNotExist" and present:
            return False
    return True


def ref_types(p: NetworkPolicy, raw: frozenset[str]) -> set[str]:
    return set(raw) if raw else ({"Ingress", "Egress"} if p.egress else {"Ingress"})


class Reference:
    def __init__(self, objects: list[Any], raw_types: dict[str, frozenset[str]]) -> None:
        self.ns = {o.name: dict(o.labels) for o in objects if isinstance(o, Namespace)}
        self.pods = {o.key: o for o in objects if isinstance(o, Pod)}
        self.policies = [o for o in objects if isinstance(o, NetworkPolicy)]
        self.raw_types = raw_types

    def ns_labels(self, name: str) -> dict[str, str]:
        return {**self.ns.get(name, {}), "kubernetes.io/metadata.name": name}

    def peer(self, pol: NetworkPolicy, peer: PolicyPeer, other: Pod, family: int | None) -> bool:
        if peer.ip_block is not None:
            b = peer.ip_block
            return any(
                (family is None or ip.version == family)
                and ip.version == b.cidr.version
                and ip in b.cidr
                and not any(ip in e for e in b.except_)
                for ip in other.ips
            )
        if not ref_endpoint(other):
            return False
        if peer.namespace_selector is None:
            ns_ok = other.namespace == pol.namespace
        else:
            ns_ok = ref_selects(peer.namespace_selector, self.ns_labels(other.namespace))
        return ns_ok and (
            peer.pod_selector is None or ref_selects(peer.pod_selector, dict(other.labels))
        )

    @staticmethod
    def port(pp: PolicyPort, port: int, proto: str, dst: Pod) -> bool:
        if pp.protocol != proto:
            return False
        if pp.port is None:
            return True
        if isinstance(pp.port, int):
            return pp.port <= port <= (pp.end_port or pp.port)
        return any(c.name == pp.port and c.protocol == proto and c.port == port for c in dst.ports)

    def applying(self, subject: Pod, direction: str) -> list[NetworkPolicy]:
        if not ref_endpoint(subject):
            return []
        return [
            p
            for p in self.policies
            if p.namespace == subject.namespace
            and direction in ref_types(p, self.raw_types[p.key])
            and ref_selects(p.pod_selector, dict(subject.labels))
        ]

    def side(
        self,
        direction: str,
        subject: Pod,
        other: Pod,
        dst: Pod,
        port: int,
        proto: str,
        family: int | None,
    ) -> bool:
        applying = self.applying(subject, direction)
        if not applying:
            return True
        for p in applying:
            for r in p.ingress if direction == "Ingress" else p.egress:
                peers_ok = not r.peers or any(self.peer(p, x, other, family) for x in r.peers)
                ports_ok = not r.ports or any(self.port(x, port, proto, dst) for x in r.ports)
                if peers_ok and ports_ok:
                    return True
        return False

    def allowed(self, src: str, dst: str, port: int, proto: str, family: int | None) -> bool:
        if src == dst:
            return True
        s, d = self.pods[src], self.pods[dst]
        return self.side("Egress", s, d, d, port, proto, family) and self.side(
            "Ingress", d, s, d, port, proto, family
        )


def build(objects: list[Any]) -> ClusterState:
    state = ClusterState()
    for o in objects:
        state.upsert(o)
    return state


def raw_types_of(objects: list[Any]) -> dict[str, frozenset[str]]:
    # What the generator asked for, before the model's defaulting.
    return {
        o.key: (frozenset() if o.policy_types_defaulted else o.policy_types)
        for o in objects
        if isinstance(o, NetworkPolicy)
    }


# --- properties ------------------------------------------------------------------------------


@SETTINGS
@given(cluster_st())
def test_indexed_state_agrees_with_brute_force_reference(objects):
    state = build(objects)
    ref = Reference(objects, raw_types_of(objects))
    keys = sorted(ref.pods)
    for policy in ref.policies:
        subjects = {
            k
            for k in keys
            if ref_endpoint(ref.pods[k])
            and ref.pods[k].namespace == policy.namespace
            and ref_selects(policy.pod_selector, dict(ref.pods[k].labels))
        }
        assert state.pods_selected_by(policy) == subjects
        for rule in (*policy.ingress, *policy.egress):
            for peer in rule.peers or ():
                if peer.ip_block is None:
                    expect = {k for k in keys if ref.peer(policy, peer, ref.pods[k], None)}
                    assert state.peer_pods(policy, peer) == expect
    for port, proto in PROBES:  # the matrix (per-pod policy cache) says what evaluate says
        matrix = reachability(state, port, proto)
        assert list(matrix) == state.endpoint_keys()
        for src, row in matrix.items():
            for dst, ok in row.items():
                assert ok == ref.allowed(src, dst, port, proto, None)
    for src in keys:
        for dst in keys:
            for port, proto in PROBES:
                for family in (None, 4, 6):
                    got = evaluate(state, src, dst, port, proto, family).allowed
                    assert got == ref.allowed(src, dst, port, proto, family), (
                        src,
                        dst,
                        port,
                        proto,
                        family,
                    )


@SETTINGS
@given(cluster_st())
def test_a_pod_no_policy_selects_in_a_direction_is_unrestricted_there(objects):
    state = build(objects)
    ref = Reference(objects, raw_types_of(objects))
    for src in ref.pods:
        for dst in ref.pods:
            for port, proto in PROBES[:3]:
                v = evaluate(state, src, dst, port, proto)
                if not ref.applying(ref.pods[src], "Egress"):
                    assert not v.egress.isolated and v.egress.allowed
                if not ref.applying(ref.pods[dst], "Ingress"):
                    assert not v.ingress.isolated and v.ingress.allowed
                if v.egress.allowed and v.ingress.allowed:
                    assert v.allowed


@SETTINGS
@given(cluster_st(), policy_st("added"))
def test_adding_a_policy_only_allows_what_it_allows_itself(objects, added):
    """Adding P: pairs it does not select are unchanged; for the pods it selects, nothing new
    is allowed unless one of P's own rules allows it (a pod that P newly isolates loses
    everything else); and a direction that was already isolated loses nothing (additive)."""
    before, after = build(objects), build([*objects, added])
    pods = sorted(after.pods)
    for src in pods:
        for dst in pods:
            for port, proto in PROBES:
                b = evaluate(before, src, dst, port, proto)
                a = evaluate(after, src, dst, port, proto)
                selects_src = (
                    added in after.policies_selecting(src) and "Egress" in added.policy_types
                )
                selects_dst = (
                    added in after.policies_selecting(dst) and "Ingress" in added.policy_types
                )
                if not selects_src:
                    assert a.egress == b.egress
                if not selects_dst:
                    assert a.ingress == b.ingress
                for side_b, side_a in ((b.egress, a.egress), (b.ingress, a.ingress)):
                    if side_a.allowed and not side_b.allowed:
                        assert any(key == added.key for key, _ in side_a.allowing)
                    if side_b.isolated:
                        assert side_a.allowed or not side_b.allowed
                    if not side_b.isolated and side_a.isolated and side_a.allowed:
                        assert side_a.allowing  # newly isolated: only explicit rules allow


@SETTINGS
@given(cluster_st(), st.lists(st.tuples(st.booleans(), st.integers(0, 20)), max_size=12))
def test_incremental_updates_equal_a_fresh_build(objects, ops):
    """Upserts and removes in any order leave the same indexes as building from scratch."""
    state = build(objects)
    live = {(type(o).__name__, getattr(o, "key", o.name)): o for o in objects}
    pool = list(objects)
    for remove, i in ops:
        if not pool:
            break
        obj = pool[i % len(pool)]
        key = (type(obj).__name__, getattr(obj, "key", obj.name))
        if remove:
            ns = None if isinstance(obj, Namespace) else obj.namespace
            state.remove(type(obj).__name__, ns, obj.name)
            live.pop(key, None)
        else:
            state.upsert(obj)
            live[key] = obj
    fresh = build(list(live.values()))
    assert state.namespace_names() == fresh.namespace_names()
    assert sorted(state.pods) == sorted(fresh.pods)
    for policy in fresh.policies.values():
        assert state.pods_selected_by(policy) == fresh.pods_selected_by(policy)
        for rule in (*policy.ingress, *policy.egress):
            for peer in rule.peers or ():
                assert state.peer_pods(policy, peer) == fresh.peer_pods(policy, peer)
    for pod in fresh.pods.values():
        for ip in pod.ips:
            assert state.pods_by_ip(ip) == fresh.pods_by_ip(ip)
