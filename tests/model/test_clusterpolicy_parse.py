"""Reading ClusterNetworkPolicy (v1alpha2), AdminNetworkPolicy and BaselineAdminNetworkPolicy
(v1alpha1) and Nodes: one internal model, and the CRDs' schema and CEL validation, each error
naming file, object and field."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from ipaddress import ip_address, ip_network
from typing import Any

import pytest

from enforcer.model.cluster import ClusterState
from enforcer.model.clusterpolicy import (
    ACCEPT,
    ADMIN,
    BASELINE,
    DENY,
    PASS,
    ClusterPeer,
    ClusterPort,
)
from enforcer.model.loader import load_text
from enforcer.model.nodes import Node
from enforcer.model.objects import LabelSelector
from enforcer.model.parse import ValidationError
from enforcer.model.parse_clusterpolicy import parse_cluster_object
from enforcer.model.staged import as_if_applied

V2 = "policy.networking.k8s.io/v1alpha2"
V1 = "policy.networking.k8s.io/v1alpha1"
Raw = dict[str, Any]


def cnp(**spec: Any) -> Raw:
    base: Raw = {"tier": "Admin", "priority": 10, "subject": {"namespaces": {}}}
    return {"apiVersion": V2, "kind": "ClusterNetworkPolicy",
            "metadata": {"name": "guard"}, "spec": {**base, **spec}}


def anp(**spec: Any) -> Raw:
    base: Raw = {"priority": 10, "subject": {"namespaces": {}}}
    return {"apiVersion": V1, "kind": "AdminNetworkPolicy",
            "metadata": {"name": "guard"}, "spec": {**base, **spec}}


def banp(**spec: Any) -> Raw:
    base: Raw = {"subject": {"namespaces": {}}}
    return {"apiVersion": V1, "kind": "BaselineAdminNetworkPolicy",
            "metadata": {"name": "default"}, "spec": {**base, **spec}}


def rule(action: str = "Deny", peers: list[Raw] | None = None, key: str = "from",
         **extra: Any) -> Raw:
    return {"action": action, key: peers if peers is not None else [{"namespaces": {}}],
            **extra}


def test_the_three_kinds_map_onto_one_model() -> None:
    tcp80 = {"tcp": {"destinationPort": {"number": 80}}}
    v2 = parse_cluster_object(cnp(
        tier="Baseline",
        ingress=[rule("Accept", [{"pods": {"podSelector": {"matchLabels": {"app": "db"}}}}],
                      name="db", protocols=[tcp80])],
        egress=[rule("Pass", [{"networks": ["10.0.0.0/8"]}], key="to",
                     protocols=[{"udp": {"destinationPort": {"range": {"start": 5000,
                                                                          "end": 5010}}}}]),
                rule("Deny", [{"nodes": {}}], key="to"),
                rule("Accept", [{"domainNames": ["*.example.com"]}], key="to")],
    ))
    assert v2 is not None and not isinstance(v2, Node)
    assert (v2.kind, v2.name, v2.tier, v2.priority) == ("ClusterNetworkPolicy", "guard",
                                                       BASELINE, 10)
    assert v2.ingress[0].action == ACCEPT and v2.ingress[0].name == "db"
    assert v2.ingress[0].ports == (ClusterPort("TCP", 80, 80),)
    # namespaceSelector omitted in v1alpha2: every namespace
    assert v2.ingress[0].peers[0].pods is not None
    assert v2.ingress[0].peers[0].pods.namespace_selector == LabelSelector()
    assert v2.egress[0].action == PASS
    assert v2.egress[0].peers == (ClusterPeer(networks=(ip_network("10.0.0.0/8"),)),)
    assert v2.egress[0].ports == (ClusterPort("UDP", 5000, 5010),)
    assert v2.egress[1].peers[0].field == "nodes" and v2.egress[1].ports is None
    assert v2.egress[2].peers[0].domain_names == ("*.example.com",)

    v1 = parse_cluster_object(anp(
        ingress=[rule("Allow", ports=[{"portNumber": {"port": 53, "protocol": "UDP"}},
                                      {"portRange": {"start": 80, "end": 90}},
                                      {"namedPort": "web"}])],
    ))
    assert v1 is not None and not isinstance(v1, Node)
    assert (v1.tier, v1.priority, v1.ingress[0].action) == (ADMIN, 10, ACCEPT)
    assert v1.ingress[0].ports == (ClusterPort("UDP", 53, 53), ClusterPort("TCP", 80, 90),
                                   ClusterPort(named="web"))
    base = parse_cluster_object(banp(egress=[rule("Deny", key="to")]))
    assert base is not None and not isinstance(base, Node)
    assert (base.tier, base.priority, base.egress[0].action) == (BASELINE, None, DENY)
    assert base.sort_key() > v2.sort_key()  # after every Baseline-tier priority


def test_equal_priorities_order_by_name_then_kind() -> None:
    a = parse_cluster_object({**cnp(), "metadata": {"name": "a"}})
    b = parse_cluster_object({**anp(), "metadata": {"name": "a"}})
    c = parse_cluster_object({**cnp(), "metadata": {"name": "b"}})
    keys = [p.sort_key() for p in (c, b, a) if p is not None and not isinstance(p, Node)]
    assert sorted(keys) == [keys[2], keys[1], keys[0]]


def test_nodes_are_read_with_their_ip_addresses() -> None:
    node = parse_cluster_object({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "n1", "labels": {"zone": "a"}},
        "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.10"},
                                 {"type": "Hostname", "address": "n1"},
                                 {"type": "InternalIP", "address": "2001:db8::10"}]},
    })
    assert node == Node("n1", {"zone": "a"}, (ip_address("192.0.2.10"),
                                              ip_address("2001:db8::10")))


def _set(path: str, value: Any) -> Callable[[Raw], None]:
    def mutate(obj: Raw) -> None:
        keys = path.split(".")
        target: Any = obj
        for key in keys[:-1]:
            target = target[int(key)] if key.isdigit() else target[key]
        last = keys[-1]
        if value is _DELETE:
            del target[last]
        else:
            target[int(last) if last.isdigit() else last] = value
    return mutate


_DELETE = object()
TCP = {"tcp": {"destinationPort": {"number": 80}}}
INVALID: list[tuple[str, Raw, Callable[[Raw], None], str, str]] = [
    ("priority too high", cnp(), _set("spec.priority", 1001), "spec.priority", "out of range"),
    ("priority negative", anp(), _set("spec.priority", -1), "spec.priority", "out of range"),
    ("priority missing", cnp(), _set("spec.priority", _DELETE), "spec.priority", "required"),
    ("priority not int", cnp(), _set("spec.priority", "1"), "spec.priority", "integer"),
    ("tier unknown", cnp(), _set("spec.tier", "Developer"), "spec.tier", "Admin or Baseline"),
    ("tier missing", cnp(), _set("spec.tier", _DELETE), "spec.tier", "required"),
    ("subject missing", cnp(), _set("spec.subject", _DELETE), "spec.subject", "required"),
    ("subject both", cnp(), _set("spec.subject", {"namespaces": {}, "pods": {"podSelector": {}}}),
     "spec.subject", "exactly one of namespaces, pods"),
    ("subject empty", cnp(), _set("spec.subject", {}), "spec.subject", "got none"),
    ("pods without podSelector", cnp(), _set("spec.subject", {"pods": {"namespaceSelector": {}}}),
     "spec.subject.pods.podSelector", "required"),
    ("v1alpha1 pods need namespaceSelector", anp(),
     _set("spec.subject", {"pods": {"podSelector": {}}}),
     "spec.subject.pods.namespaceSelector", "required"),
    ("26 ingress rules", cnp(ingress=[rule()] * 26), lambda o: None, "spec.ingress",
     "at most 25"),
    ("101 v1alpha1 egress rules", anp(egress=[rule(key="to")] * 101), lambda o: None,
     "spec.egress", "at most 100"),
    ("action unknown", cnp(ingress=[rule("Allow")]), lambda o: None, "spec.ingress[0].action",
     "use Accept, Deny, Pass"),
    ("BANP Pass", banp(ingress=[rule("Pass")]), lambda o: None, "spec.ingress[0].action",
     "use Allow, Deny"),
    ("action missing", cnp(ingress=[{"from": [{"namespaces": {}}]}]), lambda o: None,
     "spec.ingress[0].action", "required"),
    ("no peers", cnp(ingress=[rule(peers=[])]), lambda o: None, "spec.ingress[0].from",
     "at least 1"),
    ("from missing", cnp(ingress=[{"action": "Deny"}]), lambda o: None, "spec.ingress[0].from",
     "required"),
    ("26 peers", cnp(ingress=[rule(peers=[{"namespaces": {}}] * 26)]), lambda o: None,
     "spec.ingress[0].from", "at most 25"),
    ("two fields in a peer", cnp(ingress=[rule(peers=[{"namespaces": {}, "pods":
                                                       {"podSelector": {}}}])]),
     lambda o: None, "spec.ingress[0].from[0]", "exactly one"),
    ("networks in ingress", cnp(ingress=[rule(peers=[{"networks": ["10.0.0.0/8"]}])]),
     lambda o: None, "spec.ingress[0].from[0]", "networks not allowed here"),
    ("bad CIDR", cnp(egress=[rule(peers=[{"networks": ["10.0.0.300/8"]}], key="to")]),
     lambda o: None, "spec.egress[0].to[0].networks[0]", "Invalid CIDR"),
    ("address, no prefix", cnp(egress=[rule(peers=[{"networks": ["10.0.0.1"]}], key="to")]),
     lambda o: None, "spec.egress[0].to[0].networks[0]", "Invalid CIDR"),
    ("26 networks", cnp(egress=[rule(peers=[{"networks": [f"10.0.{i}.0/24" for i in range(26)]}],
                                     key="to")]),
     lambda o: None, "spec.egress[0].to[0].networks", "at most 25"),
    ("duplicate network", cnp(egress=[rule(peers=[{"networks": ["10.0.0.0/8", "10.0.0.0/8"]}],
                                           key="to")]),
     lambda o: None, "spec.egress[0].to[0].networks[1]", "Duplicate value"),
    ("bad domain", cnp(egress=[rule("Accept", [{"domainNames": ["ex*ample.com"]}], key="to")]),
     lambda o: None, "spec.egress[0].to[0].domainNames[0]", "invalid domain name"),
    ("BANP domainNames", banp(egress=[rule("Allow", [{"domainNames": ["example.com"]}],
                                           key="to")]),
     lambda o: None, "spec.egress[0].to[0]", "domainNames not allowed here"),
    ("named port with networks", cnp(egress=[rule(peers=[{"networks": ["10.0.0.0/8"]}], key="to",
                                                  protocols=[{"destinationNamedPort": "web"}])]),
     lambda o: None, "spec.egress[0]", "cannot be set with namedPorts"),
    ("v1alpha1 named port with nodes", anp(egress=[rule(peers=[{"nodes": {}}], key="to",
                                                        ports=[{"namedPort": "web"}])]),
     lambda o: None, "spec.egress[0]", "cannot be set with namedPorts"),
    ("empty tcp", cnp(ingress=[rule(protocols=[{"tcp": {}}])]), lambda o: None,
     "spec.ingress[0].protocols[0].tcp", "destinationPort"),
    ("two protocols in one item", cnp(ingress=[rule(protocols=[{**TCP, "udp": TCP["tcp"]}])]),
     lambda o: None, "spec.ingress[0].protocols[0]", "exactly one"),
    ("empty protocols", cnp(ingress=[rule(protocols=[])]), lambda o: None,
     "spec.ingress[0].protocols", "at least 1"),
    ("port 0", cnp(ingress=[rule(protocols=[{"tcp": {"destinationPort": {"number": 0}}}])]),
     lambda o: None, "spec.ingress[0].protocols[0].tcp.destinationPort.number", "out of range"),
    ("range start = end", cnp(ingress=[rule(protocols=[
        {"sctp": {"destinationPort": {"range": {"start": 80, "end": 80}}}}])]),
     lambda o: None, "spec.ingress[0].protocols[0].sctp.destinationPort.range",
     "Start port must be less than End port"),
    ("number and range", cnp(ingress=[rule(protocols=[
        {"udp": {"destinationPort": {"number": 1, "range": {"start": 1, "end": 2}}}}])]),
     lambda o: None, "spec.ingress[0].protocols[0].udp.destinationPort", "exactly one"),
    ("bad named port", cnp(ingress=[rule(protocols=[{"destinationNamedPort": "Web_1"}])]),
     lambda o: None, "spec.ingress[0].protocols[0].destinationNamedPort", "IANA"),
    ("v1alpha1 protocol", anp(ingress=[rule("Deny", ports=[
        {"portNumber": {"port": 80, "protocol": "ICMP"}}])]),
     lambda o: None, "spec.ingress[0].ports[0].portNumber.protocol", "unsupported protocol"),
    ("v1alpha1 two port kinds", anp(ingress=[rule("Deny", ports=[
        {"portNumber": {"port": 80}, "namedPort": "web"}])]),
     lambda o: None, "spec.ingress[0].ports[0]", "exactly one"),
    ("rule name too long", cnp(ingress=[rule(name="x" * 101)]), lambda o: None,
     "spec.ingress[0].name", "100 characters"),
    ("BANP not default", banp(), _set("metadata.name", "other"), "metadata.name",
     'metadata.name="default"'),
    ("selector operator", cnp(), _set("spec.subject", {"namespaces": {"matchExpressions": [
        {"key": "a", "operator": "Has"}]}}),
     "spec.subject.namespaces.matchExpressions[0].operator", "unsupported operator"),
    ("spec missing", cnp(), _set("spec", _DELETE), "spec", "required"),
]


@pytest.mark.parametrize(("obj", "mutate", "field", "message"),
                         [case[1:] for case in INVALID], ids=[case[0] for case in INVALID])
def test_invalid_objects_are_rejected_naming_file_object_and_field(
    obj: Raw, mutate: Callable[[Raw], None], field: str, message: str
) -> None:
    raw = copy.deepcopy(obj)
    mutate(raw)
    with pytest.raises(ValidationError) as caught:
        parse_cluster_object(raw, "guardrails.yaml")
    error = caught.value
    assert (error.origin, error.field) == ("guardrails.yaml", field), str(error)
    assert message in error.message
    name = raw["metadata"]["name"]
    assert str(error).startswith(f"guardrails.yaml: {raw['kind']} {name}: field {field}: ")


def test_an_invalid_object_is_skipped_whole_and_the_rest_is_read() -> None:
    bad = cnp(ingress=[rule(), rule("Deny", peers=[])])
    good = {**cnp(), "metadata": {"name": "other"}}
    text = "\n---\n".join(json.dumps(o) for o in (bad, good))
    result = load_text(text, "guard.yaml")
    assert [p.name for p in result.cluster_policies] == ["other"]
    assert result.cluster_origins == ["guard.yaml"]
    assert [str(e) for e in result.errors] == [
        "guard.yaml: ClusterNetworkPolicy guard: field spec.ingress[1].from: must have at least "
        "1 item"]
    assert not result.ignored


def test_unknown_fields_are_pruned_as_the_api_server_does() -> None:
    policy = parse_cluster_object(cnp(ingress=[rule(comment="pruned")], extra=1))
    assert policy is not None and not isinstance(policy, Node) and len(policy.ingress) == 1


def test_a_copied_state_keeps_cluster_policies_and_nodes() -> None:
    state = ClusterState()
    policy = parse_cluster_object(cnp())
    assert policy is not None
    state.upsert(policy)
    state.upsert(Node("n1", {}, (ip_address("192.0.2.1"),)))
    preview = as_if_applied(state, [])
    assert dict(preview.cluster_policies) == {"ClusterNetworkPolicy/guard": policy}
    assert list(preview.nodes) == ["n1"]
    state.remove("ClusterNetworkPolicy", None, "guard")
    state.remove("Node", None, "n1")
    assert not state.cluster_policies and not state.nodes and preview.cluster_policies


def test_other_versions_are_not_read() -> None:
    assert parse_cluster_object({**cnp(), "apiVersion": V1}) is None
    assert parse_cluster_object({**anp(), "apiVersion": V2}) is None
