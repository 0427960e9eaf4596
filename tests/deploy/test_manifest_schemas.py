"""Every manifest validates offline against the Kubernetes OpenAPI schemas (strict mode).

The Prometheus Operator's kinds have no shipped schema: their structure is checked here.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from enforcer.model.objects import (
    ENFORCER_API_GROUP,
    KIND_STAGED_NETWORK_POLICY,
    STAGED_POLICY_API,
)
from enforcer.model.parse import ValidationError, parse_object, parse_staged_policy

from .contract import KUBERNETES_VERSION, METRICS_PORT
from .render import DAEMONSET_DIR, MONITORING_DIR, REPO, find, load_documents, render

OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}


def _core_manifests() -> list[tuple[str, dict[str, Any]]]:
    """(label, object) for every Kubernetes object we ship, except the operator's kinds."""
    out = [(f"kustomization:{o['kind']}/{o['metadata']['name']}", o) for o in render()]
    out += [(f"monitoring:{o['kind']}/{o['metadata']['name']}", o) for o in render(MONITORING_DIR)]
    for path in [DAEMONSET_DIR / "uninstall.yaml", *sorted(DAEMONSET_DIR.glob("kind/*.yaml"))]:
        for doc in load_documents(path):
            if doc.get("apiVersion", "").startswith("kind.x-k8s.io"):
                continue  # kind's own config, checked below
            out.append((f"{path.relative_to(REPO)}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return [(label, o) for label, o in out if o["kind"] not in OPERATOR_KINDS]


CORE = _core_manifests()


def test_every_yaml_file_is_covered() -> None:
    """A manifest added to daemonset/ but left out of the checks would go unvalidated."""
    covered = {DAEMONSET_DIR / "uninstall.yaml"}
    for folder in (DAEMONSET_DIR, MONITORING_DIR):
        kust = yaml.safe_load((folder / "kustomization.yaml").read_text())
        covered |= {folder / "kustomization.yaml", *(folder / r for r in kust["resources"])}
    covered |= set(DAEMONSET_DIR.glob("kind/*.yaml"))
    assert set(DAEMONSET_DIR.rglob("*.yaml")) == covered


@pytest.mark.parametrize(("label", "obj"), CORE, ids=[label for label, _ in CORE])
def test_manifest_matches_kubernetes_schema(label: str, obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_validator_rejects_a_broken_daemonset() -> None:
    """The schema check is not a no-op: a wrong type and an unknown field are both caught."""
    ds = copy.deepcopy(find(render(), "DaemonSet"))
    ds["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "9830"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, KUBERNETES_VERSION, strict=True)
    ds = copy.deepcopy(find(render(), "DaemonSet"))
    ds["spec"]["template"]["spec"]["hostNetwrok"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, KUBERNETES_VERSION, strict=True)


def test_service_monitor_structure_selects_the_metrics_service() -> None:
    sm = find(render(MONITORING_DIR), "ServiceMonitor")
    svc = find(render(), "Service", "enforcer-agent-metrics")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(sm["spec"]) <= {"selector", "namespaceSelector", "endpoints", "jobLabel"}
    assert sm["spec"]["namespaceSelector"]["matchNames"] == [svc["metadata"]["namespace"]]
    labels = svc["metadata"]["labels"]
    assert sm["spec"]["selector"]["matchLabels"].items() <= labels.items()
    port_names = {p["name"] for p in svc["spec"]["ports"]}
    for endpoint in sm["spec"]["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "relabelings"}
        assert endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics"
    assert [p["port"] for p in svc["spec"]["ports"]] == [METRICS_PORT]


def test_prometheus_rule_structure() -> None:
    rule = find(render(MONITORING_DIR), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert list(rule["spec"]) == ["groups"]
    for group in rule["spec"]["groups"]:
        assert set(group) <= {"name", "interval", "rules"}
        for r in group["rules"]:
            assert set(r) <= {"alert", "record", "expr", "for", "labels", "annotations"}
            assert ("alert" in r) != ("record" in r)
            assert isinstance(r["expr"], str) and r["expr"].strip()


def test_kind_config_disables_the_default_cni_for_flannel() -> None:
    (config,) = load_documents(DAEMONSET_DIR / "kind" / "cluster.yaml")
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert config["kind"] == "Cluster"
    assert config["networking"]["disableDefaultCNI"] is True
    roles = [n["role"] for n in config["nodes"]]
    assert roles.count("control-plane") == 1 and roles.count("worker") >= 2
    assert config["networking"]["ipFamily"] == "dual"
    # flannel allocates from the same ranges the cluster gives the nodes.
    net_conf = json.loads((DAEMONSET_DIR / "kind" / "flannel-net-conf.json").read_text())
    v4, v6 = config["networking"]["podSubnet"].split(",")
    assert (net_conf["Network"], net_conf["IPv6Network"], net_conf["EnableIPv6"]) == (v4, v6, True)


def _e2e_objects() -> list[tuple[str, dict[str, Any]]]:
    """What tests/e2e creates in a cluster: the pods and every policy case, checked here
    because the suite itself runs only where a cluster exists."""
    from tests.e2e import workloads

    ips = {
        f"{n}/{p}": f"10.244.{i}.{j + 2}" for i, n in enumerate("xyz") for j, p in enumerate("abc")
    }
    objects = workloads.model("ci")
    for case, policies in workloads.policy_cases(ips, "ci").items():
        objects += [
            {**p, "metadata": {**p["metadata"], "name": f"{case}-{p['metadata']['name']}"}}
            for p in policies
        ]
    return [(f"e2e:{o['kind']}/{o['metadata']['name']}", o) for o in objects]


E2E = _e2e_objects()


@pytest.mark.parametrize(("label", "obj"), E2E, ids=[label for label, _ in E2E])
def test_e2e_object_matches_kubernetes_schema(label: str, obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


# --- the StagedNetworkPolicy CRD -----------------------------------------------------------


def _staged_crd() -> dict[str, Any]:
    return find(render(), "CustomResourceDefinition", "stagednetworkpolicies.enforcer.dev")


def _staged(policy: dict[str, Any]) -> dict[str, Any]:
    return {**copy.deepcopy(policy), "apiVersion": STAGED_POLICY_API, "kind": "StagedNetworkPolicy"}


def _crd_schema() -> dict[str, Any]:
    (version,) = _staged_crd()["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def _shipped_policies() -> list[dict[str, Any]]:
    """Every NetworkPolicy the repository writes: the examples and the e2e cases."""
    docs = [
        doc
        for path in sorted((REPO / "examples").rglob("*.yaml"))
        for doc in load_documents(path)
        if doc.get("kind") == "NetworkPolicy"
    ]
    return docs + [o for _, o in E2E if o["kind"] == "NetworkPolicy"]


def test_staged_policy_crd_serves_the_kind_the_model_reads() -> None:
    crd = _staged_crd()
    group, version = STAGED_POLICY_API.split("/")
    assert crd["spec"]["group"] == group == ENFORCER_API_GROUP
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"]["kind"] == KIND_STAGED_NETWORK_POLICY
    plural = crd["spec"]["names"]["plural"]
    assert crd["metadata"]["name"] == f"{plural}.{group}"
    (served,) = crd["spec"]["versions"]
    assert served["name"] == version and served["served"] and served["storage"]


def test_staged_policy_crd_schema_accepts_every_networkpolicy_spec() -> None:
    """The spec is the NetworkPolicy spec: every policy we ship, staged, passes the CRD's
    schema, and the model reads it back as the very same policy (or rejects it alike: some
    e2e cases are rendered here with addresses their ipBlocks do not fit)."""
    schema = _crd_schema()
    policies = _shipped_policies()
    assert len(policies) > 20
    for policy in policies:
        jsonschema.validate(_staged(policy), schema)
        try:
            expected = parse_object(policy)
        except ValidationError as exc:
            with pytest.raises(ValidationError) as staged_exc:
                parse_staged_policy(_staged(policy))
            assert (staged_exc.value.field, staged_exc.value.message) == (exc.field, exc.message)
        else:
            assert parse_staged_policy(_staged(policy)) == expected


@pytest.mark.parametrize(
    "spec",
    [None, "deny", {"policyTypes": ["Inbound"]}, {"ingress": {"from": []}}, {"egress": ["x"]}],
    ids=["no-spec", "string-spec", "bad-policy-type", "ingress-not-a-list", "rule-not-an-object"],
)
def test_staged_policy_crd_schema_rejects_a_wrong_shape(spec: Any) -> None:
    doc = _staged({"metadata": {"name": "p", "namespace": "x"}})
    if spec is not None:
        doc["spec"] = spec
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, _crd_schema())


def test_every_staged_policy_example_fits_the_crd_and_the_model() -> None:
    examples = [
        doc
        for path in sorted((REPO / "examples").rglob("*.yaml"))
        for doc in load_documents(path)
        if doc.get("kind") == KIND_STAGED_NETWORK_POLICY
    ]
    assert examples
    for doc in examples:
        jsonschema.validate(doc, _crd_schema())
        assert parse_staged_policy(doc) is not None
