"""The objects the e2e suite creates: the upstream x/y/z by a/b/c model as real pods.

Pure builders (no cluster needed), so tests/deploy validates them against the schemas.
Each pod runs agnhost's serve-hostname on 80 and 81, TCP and UDP (one container each, as the
upstream suite does), beside a `toolbox` container of the enforcer image (Python and scapy)
that the suite execs into to probe and to inject crafted packets from the pod's namespace.
"""

from __future__ import annotations

import copy
import os
from typing import Any

from tests.lab import upstream

NAMESPACES = upstream.NAMESPACES  # logical names: x, y, z
PODS = upstream.PODS  # a, b, c
PORTS = (80, 81)
PROTOCOLS = ("TCP", "UDP")  # SCTP is not probed: many node kernels lack the module

AGNHOST_IMAGE = os.environ.get(
    "ENFORCER_E2E_AGNHOST_IMAGE", "registry.k8s.io/e2e-test-images/agnhost:2.47"
)
TOOLBOX_IMAGE = os.environ.get("ENFORCER_E2E_IMAGE", "enforcer:dev")
TOOLBOX = "toolbox"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

Obj = dict[str, Any]


def real_namespace(logical: str, run_id: str) -> str:
    """Namespaces are unique per run; the `ns` label keeps the logical name for selectors."""
    return f"{logical}-{run_id}"


def namespace(logical: str, run_id: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": real_namespace(logical, run_id),
            "labels": {"ns": logical, "enforcer-e2e": run_id},
        },
    }


def _server(port: int, protocol: str) -> Obj:
    proto = protocol.lower()
    return {
        "name": f"cont-{port}-{proto}",
        "image": AGNHOST_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "args": ["serve-hostname", f"--{proto}", "--http=false", "--port", str(port)],
        "ports": [{"name": f"serve-{port}-{proto}", "containerPort": port, "protocol": protocol}],
        "securityContext": {"allowPrivilegeEscalation": False},
    }


def pod(logical_ns: str, name: str, run_id: str) -> Obj:
    toolbox = {
        "name": TOOLBOX,
        "image": TOOLBOX_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sleep", "infinity"],
        # Raw sockets for scapy, nothing else.
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"], "add": ["NET_RAW"]},
        },
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": real_namespace(logical_ns, run_id),
            "labels": {"pod": name, "enforcer-e2e": run_id},
        },
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [_server(p, proto) for p in PORTS for proto in PROTOCOLS] + [toolbox],
        },
    }


def model(run_id: str) -> list[Obj]:
    """Namespaces first, then the nine pods."""
    return [namespace(n, run_id) for n in NAMESPACES] + [
        pod(n, p, run_id) for n in NAMESPACES for p in PODS
    ]


def remap_policy(policy: Obj, run_id: str) -> Obj:
    """An upstream case's policy, moved to this run's namespaces: its own namespace, and
    namespace-name selectors (the ones on kubernetes.io/metadata.name)."""
    out = copy.deepcopy(policy)
    out["metadata"]["namespace"] = real_namespace(out["metadata"]["namespace"], run_id)
    _remap_selectors(out["spec"], run_id)
    return out


def _remap_selectors(node: Any, run_id: str) -> None:
    if isinstance(node, list):
        for item in node:
            _remap_selectors(item, run_id)
        return
    if not isinstance(node, dict):
        return
    labels = node.get("matchLabels")
    if isinstance(labels, dict) and NAMESPACE_NAME_LABEL in labels:
        labels[NAMESPACE_NAME_LABEL] = real_namespace(labels[NAMESPACE_NAME_LABEL], run_id)
    for expr in node.get("matchExpressions") or []:
        if isinstance(expr, dict) and expr.get("key") == NAMESPACE_NAME_LABEL:
            expr["values"] = [real_namespace(v, run_id) for v in expr.get("values", [])]
    for value in node.values():
        _remap_selectors(value, run_id)


def policy_cases(ip_of: dict[str, str], run_id: str) -> dict[str, list[Obj]]:
    """Upstream's cases (tests/lab/upstream.py, shared with the lab tests) for this run."""
    cases = upstream.cases(ip_of)
    return {name: [remap_policy(p, run_id) for p in policies] for name, policies in cases.items()}
