"""Random clusters for the differential tests: small label alphabets so selectors collide,
named ports that differ per pod, ipBlocks with excepts that overlap pod IPs, dual stack."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

from hypothesis import strategies as st

from enforcer.model.cluster import ClusterState
from enforcer.model.evaluate import evaluate, evaluate_ip
from enforcer.model.objects import (
    EGRESS,
    INGRESS,
    ContainerPort,
    IPAddress,
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

from .simulator import PROBE_PORTS

NAMESPACES = ("a", "b", "c")
LABEL_KEYS = ("app", "tier")
LABEL_VALUES = ("x", "y")
V4_POOL = tuple(ip_address(f"10.0.0.{i}") for i in range(1, 9))
V6_POOL = tuple(ip_address(f"fd00::{i}") for i in range(1, 9))
NODE_IPS = (ip_address("192.168.0.1"), ip_address("192.168.0.2"))
EXTERNAL_IPS = (
    ip_address("10.0.0.9"),
    ip_address("10.0.0.200"),
    ip_address("8.8.8.8"),
    ip_address("fd00::9"),
    ip_address("2001:db8::1"),
    *NODE_IPS,
)


def _net(text: str):
    return ip_network(text)


BLOCKS = (
    IPBlock(_net("10.0.0.0/24")),
    IPBlock(_net("10.0.0.0/29"), (_net("10.0.0.4/30"),)),
    IPBlock(_net("10.0.0.0/30")),
    IPBlock(_net("10.0.0.5/32")),
    IPBlock(_net("0.0.0.0/0"), (_net("10.0.0.0/8"),)),
    IPBlock(_net("0.0.0.0/0")),
    IPBlock(_net("192.168.0.0/24")),
    IPBlock(_net("fd00::/120"), (_net("fd00::4/126"),)),
    IPBlock(_net("::/0")),
)

# Per pod at most one container port per name, so names map to one number per pod but to
# different numbers on different pods.
NAMED_PORT_CHOICES = {
    "http": (
        ContainerPort("http", 80, "TCP"),
        ContainerPort("http", 8080, "TCP"),
        ContainerPort("http", 81, "UDP"),
    ),
    "dns": (ContainerPort("dns", 53, "UDP"),),
    "alt": (ContainerPort("alt", 81, "TCP"),),
}

labels_st = st.dictionaries(st.sampled_from(LABEL_KEYS), st.sampled_from(LABEL_VALUES), max_size=2)


@st.composite
def requirement_st(draw) -> LabelRequirement:
    op = draw(st.sampled_from(("In", "NotIn", "Exists", "DoesNotExist")))
    key = draw(st.sampled_from((*LABEL_KEYS, "team")))
    if op in ("In", "NotIn"):
        values = draw(st.lists(st.sampled_from((*LABEL_VALUES, "red")), min_size=1, max_size=2))
        return LabelRequirement(key, op, tuple(sorted(set(values))))
    return LabelRequirement(key, op)


@st.composite
def selector_st(draw) -> LabelSelector:
    return LabelSelector(
        match_labels=draw(
            st.dictionaries(st.sampled_from(LABEL_KEYS), st.sampled_from(LABEL_VALUES), max_size=1)
        ),
        match_expressions=tuple(draw(st.lists(requirement_st(), max_size=1))),
    )


# Mostly selectors on the label namespace events flip, so relabels change what peers match.
ns_selector_st = st.one_of(
    st.builds(lambda t: LabelSelector({"team": t}), st.sampled_from(("red", "red", "blue"))),
    st.builds(lambda t: LabelSelector({"team": t}), st.sampled_from(("red", "blue"))),
    st.builds(LabelSelector),
    st.builds(
        lambda n: LabelSelector({"kubernetes.io/metadata.name": n}), st.sampled_from(NAMESPACES)
    ),
    st.builds(lambda r: LabelSelector(match_expressions=(r,)), requirement_st()),
)


@st.composite
def peer_st(draw) -> PolicyPeer:
    kind = draw(st.sampled_from(("pod", "ns", "both", "block")))
    if kind == "block":
        return PolicyPeer(ip_block=draw(st.sampled_from(BLOCKS)))
    pod_sel = draw(selector_st()) if kind in ("pod", "both") else None
    ns_sel = draw(ns_selector_st) if kind in ("ns", "both") else None
    return PolicyPeer(pod_selector=pod_sel, namespace_selector=ns_sel)


@st.composite
def port_st(draw) -> PolicyPort:
    protocol = draw(st.sampled_from(("TCP", "TCP", "UDP", "SCTP")))
    port = draw(st.sampled_from((None, 80, 81, 53, 8080, "http", "dns", "alt", "nope")))
    end_port = None
    if isinstance(port, int):
        wide = 8080 if port < 8080 else None
        end_port = draw(st.sampled_from((None, None, port, port + 1, wide)))
    return PolicyPort(protocol, port, end_port)


@st.composite
def rule_st(draw) -> PolicyRule:
    peers = None
    if draw(st.integers(0, 3)):
        peers = tuple(draw(st.lists(peer_st(), min_size=1, max_size=2)))
    ports = draw(st.one_of(st.none(), st.lists(port_st(), max_size=2).map(tuple)))
    return PolicyRule(peers, ports)


@st.composite
def policy_st(draw, name: str) -> NetworkPolicy:
    ingress = tuple(draw(st.lists(rule_st(), max_size=2)))
    egress = tuple(draw(st.lists(rule_st(), max_size=2)))
    types = draw(
        st.sampled_from(
            (frozenset(), frozenset({INGRESS}), frozenset({EGRESS}), frozenset({INGRESS, EGRESS}))
        )
    )
    return NetworkPolicy(
        namespace=draw(st.sampled_from(NAMESPACES)),
        name=name,
        uid=f"uid-{name}",
        pod_selector=draw(selector_st()),
        policy_types=types,
        ingress=ingress,
        egress=egress,
    )


@st.composite
def namespace_st(draw, name: str) -> Namespace:
    team = draw(st.sampled_from((None, "red", "blue")))
    return Namespace(name, {"team": team} if team else {}, uid=f"uid-ns-{name}")


@st.composite
def pod_st(draw, name: str, v4: IPAddress, v6: IPAddress, uid: str) -> Pod:
    kind = draw(st.sampled_from(("endpoint",) * 6 + ("host", "done")))
    family = draw(st.sampled_from(("4", "6", "46", "46")))
    ips: tuple[IPAddress, ...] = tuple(ip for ip, f in ((v4, "4"), (v6, "6")) if f in family)
    ports = []
    for choices in NAMED_PORT_CHOICES.values():
        choice = draw(st.sampled_from((None, *choices)))
        if choice is not None:
            ports.append(choice)
    if kind == "host":
        ips = (draw(st.sampled_from(NODE_IPS)),)
    return Pod(
        namespace=draw(st.sampled_from(NAMESPACES)),
        name=name,
        uid=uid,
        labels=draw(labels_st),
        ips=ips,
        node_name=draw(st.sampled_from(("node-1", "node-1", "node-2"))),
        host_network=kind == "host",
        phase="Succeeded" if kind == "done" else "Running",
        ports=tuple(ports),
    )


@st.composite
def cluster_st(draw) -> list:
    namespaces = [draw(namespace_st(n)) for n in NAMESPACES if draw(st.booleans())]
    count = draw(st.integers(3, 7))
    slots = draw(st.permutations(range(len(V4_POOL))))
    pods = [
        draw(pod_st(f"p{i}", V4_POOL[slots[i]], V6_POOL[slots[i]], f"uid-p{i}"))
        for i in range(count)
    ]
    policies = [draw(policy_st(f"np{i}")) for i in range(draw(st.integers(1, 5)))]
    return [*namespaces, *pods, *policies]


def _first_ip(pod: Pod, family: int) -> IPAddress | None:
    ips = pod.ips_of_family(family)
    return ips[0] if ips else None


def probes(state: ClusterState) -> list[tuple[tuple, tuple]]:
    """Every connection the model can judge unambiguously, as (probe, model question).

    A probe is (src key | None, src IP, dst key | None, dst IP, protocol, port), None being an
    address that is not an endpoint pod.
    """
    out: list[tuple[tuple, tuple]] = []
    endpoints = [p for p in state.pods.values() if state.is_endpoint(p)]
    for src in endpoints:
        for dst in endpoints:
            for family in (4, 6):
                src_ip, dst_ip = _first_ip(src, family), _first_ip(dst, family)
                if src_ip is None or dst_ip is None:
                    continue
                if state.pods_by_ip(src_ip) != src.key or state.pods_by_ip(dst_ip) != dst.key:
                    continue  # an IP two live pods claim: only its newest owner is addressable
                for protocol, port in PROBE_PORTS:
                    probe = (src.key, src_ip, dst.key, dst_ip, protocol, port)
                    out.append((probe, ("pods", src.key, dst.key, port, protocol, family)))
    outside = [ip for ip in (*EXTERNAL_IPS, *V4_POOL, *V6_POOL) if state.pods_by_ip(ip) is None]
    for pod in endpoints:
        for ip in outside:
            own = _first_ip(pod, ip.version) or ip
            for protocol, port in PROBE_PORTS:
                out.append(
                    (
                        (pod.key, own, None, ip, protocol, port),
                        ("ip", pod.key, ip, port, protocol, EGRESS),
                    )
                )
                out.append(
                    (
                        (None, ip, pod.key, own, protocol, port),
                        ("ip", pod.key, ip, port, protocol, INGRESS),
                    )
                )
    return out


def model_verdicts(state: ClusterState) -> dict[tuple, bool]:
    """probe -> the model's verdict, for every probe of `probes`."""
    out = {}
    for probe, question in probes(state):
        if question[0] == "pods":
            out[probe] = evaluate(state, *question[1:]).allowed
        else:
            out[probe] = evaluate_ip(state, *question[1:]).allowed
    return out
