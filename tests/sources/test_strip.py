"""Stripping keeps everything the policy model reads: the parsed objects are identical."""

from __future__ import annotations

import json
from typing import Any

from enforcer.model.parse import parse_object
from enforcer.sources.strip import strip_object


def full_pod() -> dict[str, Any]:
    """A pod as `kubectl get pod -o json` shows one: mostly fields policy never reads."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-7d4b9c-x2x9z",
            "namespace": "prod",
            "uid": "0b6f5f5e-3f0a-4c1e-9d4f-1a2b3c4d5e6f",
            "resourceVersion": "123456",
            "labels": {"app": "web", "pod-template-hash": "7d4b9c"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-01-01T00:00:00Z"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "web-7d4b9c", "uid": "x"}],
            "managedFields": [
                {"manager": "kube-controller-manager", "fieldsV1": {"f:metadata": {"a": {}}}}
            ]
            * 6,
        },
        "spec": {
            "nodeName": "node-a",
            "hostNetwork": False,
            "initContainers": [
                {
                    "name": "proxy",
                    "restartPolicy": "Always",
                    "image": "envoy",
                    "ports": [{"name": "admin", "containerPort": 9901, "protocol": "TCP"}],
                },
                {"name": "init", "image": "busybox", "command": ["sh", "-c", "true"]},
            ],
            "containers": [
                {
                    "name": "app",
                    "image": "registry.example/web:1.2.3",
                    "ports": [
                        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                        {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                    ],
                    "env": [{"name": f"VAR_{i}", "value": "x" * 40} for i in range(30)],
                    "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}] * 5,
                },
                {"name": "logger", "image": "fluent-bit", "args": ["--flag"] * 10},
            ],
            "volumes": [{"name": "data", "emptyDir": {}}] * 5,
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}] * 2,
        },
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.10",
            "podIPs": [{"ip": "10.0.0.10"}, {"ip": "fd00::10"}],
            "hostIP": "192.168.1.10",
            "conditions": [{"type": "Ready", "status": "True"}] * 4,
            "containerStatuses": [{"name": "app", "ready": True, "imageID": "sha256:" + "f" * 64}],
        },
    }


def test_stripped_pod_parses_to_the_same_model_object() -> None:
    pod = full_pod()
    stripped = strip_object("Pod", pod)
    assert parse_object(stripped) == parse_object(pod)
    model = parse_object(stripped)
    assert model is not None and len(model.ports) == 3  # the sidecar's port is kept
    assert len(json.dumps(stripped)) * 5 < len(json.dumps(pod))


def test_host_network_and_terminal_phase_survive() -> None:
    pod = full_pod()
    pod["spec"]["hostNetwork"] = True
    pod["status"]["phase"] = "Succeeded"
    assert parse_object(strip_object("Pod", pod)) == parse_object(pod)


def test_the_service_account_survives() -> None:
    """Selectors match it (SERVICE_ACCOUNT_LABEL): a stripped pod must not become `default`."""
    for spec in ({"serviceAccountName": "billing"}, {"serviceAccount": "billing"}):
        pod = full_pod()
        pod["spec"].update(spec, automountServiceAccountToken=False)
        model = parse_object(strip_object("Pod", pod))
        assert model == parse_object(pod)
        assert model is not None
        assert model.labels["policy.enforcer.dev/serviceaccount"] == "billing"


def test_stripped_policy_and_namespace_parse_the_same() -> None:
    pol = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": "p",
            "namespace": "prod",
            "uid": "u",
            "generation": 3,
            "annotations": {"a": "b"},
        },
        "spec": {
            "podSelector": {
                "matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]
            },
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                    "ports": [{"port": 80, "endPort": 90}],
                }
            ],
            "egress": [
                {
                    "to": [{"namespaceSelector": {}, "podSelector": {}}],
                    "ports": [{"port": "dns", "protocol": "UDP"}],
                }
            ],
        },
    }
    assert parse_object(strip_object("NetworkPolicy", pol)) == parse_object(pol)
    ns = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "prod", "uid": "n", "labels": {"team": "a"}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }
    assert parse_object(strip_object("Namespace", ns)) == parse_object(ns)
