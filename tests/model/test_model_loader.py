"""Loading manifests: formats, API-server defaulting, validation errors, nothing partial."""

from __future__ import annotations

import json
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest
from netpol_builders import policy

from enforcer.model.loader import ValidationError, load_paths, load_text, parse_object
from enforcer.model.objects import NAMESPACE_NAME_LABEL, Namespace, NetworkPolicy, Pod


def parse_policy(**spec) -> NetworkPolicy:
    obj = parse_object(policy("x", "p", **spec), "f.yaml")
    assert isinstance(obj, NetworkPolicy)
    return obj


# --- defaulting ---------------------------------------------------------------------------


def test_defaults_protocol_types_and_namespace():
    doc = policy("x", "p", ingress=[{"ports": [{"port": 80}]}])
    del doc["metadata"]["namespace"]
    p = parse_object(doc)
    assert isinstance(p, NetworkPolicy)
    assert p.namespace == "default"
    assert p.policy_types == {"Ingress"} and p.policy_types_defaulted
    assert p.ingress[0].ports[0].protocol == "TCP"
    assert p.ingress[0].peers is None


def test_numeric_and_named_ports():
    p = parse_policy(ingress=[{"ports": [{"port": 8080}, {"port": "http"}]}])
    assert [pp.port for pp in p.ingress[0].ports] == [8080, "http"]


def test_namespace_always_carries_its_name_label():
    n = parse_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})
    assert isinstance(n, Namespace) and n.labels == {NAMESPACE_NAME_LABEL: "x"}


def test_pod_fields_and_defaults():
    p = parse_object(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "a", "namespace": "x", "labels": {"app": "web"}, "uid": "u1"},
            "spec": {
                "nodeName": "n1",
                "containers": [
                    {
                        "name": "c",
                        "ports": [
                            {"containerPort": 53, "name": "dns", "protocol": "UDP"},
                            {"containerPort": 80},
                        ],
                    }
                ],
            },
            "status": {
                "phase": "Running",
                "podIP": "10.0.0.1",
                "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}],
            },
        }
    )
    assert isinstance(p, Pod)
    assert p.key == "x/a" and p.uid == "u1" and p.node_name == "n1" and p.is_endpoint
    assert p.ips == (ip_address("10.0.0.1"), ip_address("fd00::1"))
    assert [(c.name, c.port, c.protocol) for c in p.ports] == [
        ("dns", 53, "UDP"),
        (None, 80, "TCP"),
    ]
    bare = parse_object({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "b"}})
    assert isinstance(bare, Pod) and bare.phase == "Pending" and not bare.is_endpoint


def test_legacy_cidr_with_host_bits_is_masked():
    p = parse_policy(ingress=[{"from": [{"ipBlock": {"cidr": "192.168.1.1/24"}}]}])
    assert p.ingress[0].peers[0].ip_block.cidr == ip_network("192.168.1.0/24")


def test_ignored_kinds_return_none():
    assert parse_object({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}) is None
    old = policy("x", "p")
    old["apiVersion"] = "extensions/v1beta1"
    assert parse_object(old) is None


# --- validation ---------------------------------------------------------------------------

BAD_POLICIES = [
    (
        {"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]},
        "spec.ingress[0].from[0].ipBlock.cidr",
        "invalid CIDR",
    ),
    (
        {"ingress": [{"from": [{"ipBlock": {"cidr": "not-a-cidr"}}]}]},
        "spec.ingress[0].from[0].ipBlock.cidr",
        "invalid CIDR",
    ),
    (
        {
            "ingress": [
                {
                    "from": [
                        {"podSelector": {}},
                        {
                            "ipBlock": {
                                "cidr": "10.0.0.0/8",
                                "except": ["10.0.0.0/16", "11.0.0.0/16"],
                            }
                        },
                    ]
                }
            ]
        },
        "spec.ingress[0].from[1].ipBlock.except[1]",
        "strict subset",
    ),
    (
        {"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}}]}]},
        "spec.egress[0].to[0].ipBlock.except[0]",
        "strict subset",
    ),
    (
        {"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["fd00::/64"]}}]}]},
        "spec.egress[0].to[0].ipBlock.except[0]",
        "strict subset",
    ),
    (
        {"ingress": [{"ports": [{"port": 90, "endPort": 80}]}]},
        "spec.ingress[0].ports[0].endPort",
        "greater than or equal",
    ),
    (
        {"ingress": [{"ports": [{"port": "http", "endPort": 80}]}]},
        "spec.ingress[0].ports[0].endPort",
        "non-numeric",
    ),
    (
        {"ingress": [{"ports": [{"endPort": 80}]}]},
        "spec.ingress[0].ports[0].endPort",
        "not specified",
    ),
    (
        {"ingress": [{"ports": [{"protocol": "ICMP", "port": 80}]}]},
        "spec.ingress[0].ports[0].protocol",
        "unsupported protocol",
    ),
    (
        {"ingress": [{"ports": [{"protocol": "tcp"}]}]},
        "spec.ingress[0].ports[0].protocol",
        "unsupported protocol",
    ),
    ({"ingress": [{"ports": [{"port": 70000}]}]}, "spec.ingress[0].ports[0].port", "out of range"),
    (
        {"ingress": [{"ports": [{"port": "Not_A_Name"}]}]},
        "spec.ingress[0].ports[0].port",
        "invalid port name",
    ),
    (
        {
            "podSelector": {
                "matchExpressions": [{"key": "a", "operator": "Equals", "values": ["b"]}]
            }
        },
        "spec.podSelector.matchExpressions[0].operator",
        "unsupported operator",
    ),
    (
        {"podSelector": {"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}},
        "spec.podSelector.matchExpressions[0].values",
        "non-empty",
    ),
    (
        {
            "podSelector": {
                "matchExpressions": [{"key": "a", "operator": "Exists", "values": ["b"]}]
            }
        },
        "spec.podSelector.matchExpressions[0].values",
        "must be empty",
    ),
    (
        {"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]},
        "spec.egress[0].to[0].ipBlock",
        "both ipBlock and another peer",
    ),
    (
        {"ingress": [{"from": [{"namespaceSelector": {}, "ipBlock": {"cidr": "10.0.0.0/8"}}]}]},
        "spec.ingress[0].from[0].ipBlock",
        "both ipBlock and another peer",
    ),
    ({"ingress": [{"from": [{}]}]}, "spec.ingress[0].from[0]", "must specify a peer"),
    ({"policyTypes": ["Ingress", "Sideways"]}, "spec.policyTypes[1]", "unsupported value"),
    ({"podSelector": {"matchLabels": {"app": 1}}}, "spec.podSelector.matchLabels[app]", "string"),
    ({"ingress": {"from": []}}, "spec.ingress", "must be a list"),
]


@pytest.mark.parametrize(("spec", "field", "message"), BAD_POLICIES)
def test_invalid_policy_names_origin_object_and_field(spec, field, message):
    with pytest.raises(ValidationError) as info:
        parse_object(policy("x", "bad", **spec), "dir/policies.yaml")
    err = info.value
    assert (err.origin, err.kind, err.namespace, err.name) == (
        "dir/policies.yaml",
        "NetworkPolicy",
        "x",
        "bad",
    )
    assert err.field == field
    assert message in err.message
    text = str(err)
    for part in ("dir/policies.yaml", "NetworkPolicy x/bad", field, message):
        assert part in text


def test_missing_name_is_rejected():
    doc = policy("x", "p")
    del doc["metadata"]["name"]
    with pytest.raises(ValidationError) as info:
        parse_object(doc, "f.yaml")
    assert info.value.field == "metadata.name" and "required" in info.value.message
    assert "unnamed" in str(info.value)


def test_invalid_pod_fields_are_rejected():
    bad_ip = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "a"},
        "status": {"podIPs": [{"ip": "10.0.0.300"}]},
    }
    with pytest.raises(ValidationError, match="invalid IP"):
        parse_object(bad_ip)
    bad_port = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "a"},
        "spec": {"containers": [{"ports": [{"containerPort": 0}]}]},
    }
    with pytest.raises(ValidationError) as info:
        parse_object(bad_port)
    assert info.value.field == "spec.containers[0].ports[0].containerPort"


# --- files --------------------------------------------------------------------------------


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


MULTI = """
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: good, namespace: x}
spec: {podSelector: {}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: bad, namespace: x}
spec:
  podSelector: {}
  ingress:
    - from: [{podSelector: {}}]
    - ports: [{port: 80, endPort: 79}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg, namespace: x}
---
"""


def test_multi_document_file_skips_the_invalid_object_entirely(tmp_path):
    result = load_paths([write(tmp_path, "all.yaml", MULTI)])
    assert sorted(type(o).__name__ + ":" + o.name for o in result.objects) == [
        "Namespace:x",
        "NetworkPolicy:good",
    ]
    assert len(result.errors) == 1
    assert (
        result.errors[0].name == "bad"
        and result.errors[0].field == "spec.ingress[1].ports[0].endPort"
    )
    assert any("ConfigMap x/cfg" in n for n in result.notes)
    assert result.origins == [str(tmp_path / "all.yaml")] * 2


def test_kubectl_list_and_typed_list_output(tmp_path):
    listing = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            policy("x", "p1"),
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}},
        ],
    }
    typed = {
        "apiVersion": "v1",
        "kind": "PodList",
        "items": [{"metadata": {"name": "a", "namespace": "x"}, "status": {"podIP": "10.0.0.1"}}],
    }
    write(tmp_path, "d/list.json", json.dumps(listing))
    write(tmp_path, "d/sub/pods.yml", json.dumps(typed))  # JSON is YAML too
    write(tmp_path, "d/readme.txt", "not a manifest")
    result = load_paths([tmp_path / "d"])
    assert not result.errors
    assert sorted(o.name for o in result.objects) == ["a", "p1", "x"]


def test_json_array_and_unparsable_yaml(tmp_path):
    result = load_text(json.dumps([policy("x", "p1"), policy("x", "p2")]), "arr.json")
    assert [o.name for o in result.objects] == ["p1", "p2"]
    yaml_list = load_text("- " + json.dumps(policy("x", "p3")), "arr.yaml")
    assert [o.name for o in yaml_list.objects] == ["p3"]
    broken = load_text("kind: [unclosed", "broken.yaml")
    assert not broken.objects and "cannot parse" in str(broken.errors[0])
    assert broken.errors[0].origin == "broken.yaml"


def test_missing_path_is_an_error(tmp_path):
    result = load_paths([tmp_path / "nope.yaml"])
    assert "no such file" in str(result.errors[0])
