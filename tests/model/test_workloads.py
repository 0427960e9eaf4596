"""A pod's workload from its controller owner reference (as the API server returns pods)."""

from __future__ import annotations

from typing import Any

import pytest

from enforcer.model.objects import Pod
from enforcer.model.parse import ValidationError, parse_object
from enforcer.model.workloads import Workload, workload_of
from enforcer.sources.strip import strip_object


def _pod(owners: list[dict[str, Any]] | None, labels: dict[str, str] | None = None) -> Pod:
    meta: dict[str, Any] = {"name": "web-7d9f8b6c4-x2x9z", "namespace": "shop",
                            "labels": labels or {}}
    if owners is not None:
        meta["ownerReferences"] = owners
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": []},
           "status": {"podIP": "10.0.0.5", "phase": "Running"}}
    # Through the agent's stripping too: what survives it is what the agent sees.
    parsed = parse_object(strip_object("Pod", obj))
    assert isinstance(parsed, Pod)
    assert parsed == parse_object(obj)
    return parsed


def _ref(kind: str, name: str, controller: bool = True) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "u",
            "controller": controller}


def test_a_deployments_pod_is_named_by_the_deployment() -> None:
    pod = _pod([_ref("ReplicaSet", "web-7d9f8b6c4")], {"pod-template-hash": "7d9f8b6c4"})
    assert workload_of(pod) == Workload("shop", "Deployment", "web")
    assert workload_of(pod).key == "shop/web"


def test_a_replicaset_without_the_hash_label_stays_a_replicaset() -> None:
    pod = _pod([_ref("ReplicaSet", "web-7d9f8b6c4")])
    assert workload_of(pod) == Workload("shop", "ReplicaSet", "web-7d9f8b6c4")


@pytest.mark.parametrize("kind", ["StatefulSet", "DaemonSet", "Job"])
def test_other_controllers_name_themselves(kind: str) -> None:
    assert workload_of(_pod([_ref(kind, "db")])) == Workload("shop", kind, "db")


def test_only_the_controller_reference_counts() -> None:
    pod = _pod([_ref("ConfigMap", "x", controller=False), _ref("StatefulSet", "db")])
    assert workload_of(pod) == Workload("shop", "StatefulSet", "db")


def test_a_pod_without_a_controller_is_its_own_workload() -> None:
    assert workload_of(_pod(None)) == Workload("shop", "Pod", "web-7d9f8b6c4-x2x9z")
    assert workload_of(_pod([_ref("StatefulSet", "db", controller=False)])).kind == "Pod"


def test_a_malformed_owner_reference_names_its_field() -> None:
    obj = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "namespace": "n", "ownerReferences": ["oops"]},
           "spec": {"containers": []}}
    with pytest.raises(ValidationError, match=r"metadata\.ownerReferences\[0\]"):
        parse_object(obj)
