"""The end-to-end suite runs against a real cluster with the agent deployed.

ENFORCER_E2E_KUBECONFIG names the cluster's kubeconfig (`make kind-e2e` and `make vagrant-e2e`
set it). Without it, a run over the whole tree (CI's `pytest tests`) leaves this folder out
entirely, so nothing is reported as skipped; naming tests/e2e explicitly without it skips every
test with a reason that says no cluster is configured.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .kube import Cluster, Deployed, pod_info
from .workloads import NAMESPACES, PODS, model

ENV = "ENFORCER_E2E_KUBECONFIG"
SKIP_REASON = (
    f"no cluster configured: {ENV} is unset (make kind-e2e or make vagrant-e2e set it to a "
    "cluster running the agent)"
)
HERE = Path(__file__).resolve().parent


def _explicitly_requested(config: pytest.Config) -> bool:
    for arg in config.args:
        path = Path(str(arg).split("::", 1)[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if os.environ.get(ENV) or _explicitly_requested(config):
        return None
    return True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)
            if not os.environ.get(ENV):
                item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    return Cluster(os.environ[ENV])


@pytest.fixture(scope="session")
def deployed(cluster: Cluster) -> Iterator[Deployed]:
    run_id = secrets.token_hex(3)
    objects = model(run_id)
    namespaces = [o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"]
    try:
        for obj in objects:
            cluster.create(obj)
        ready = cluster.wait_for_pods(namespaces, len(NAMESPACES) * len(PODS))
        pods = {}
        for p in ready:
            info = pod_info(p)
            logical_ns = info.namespace.removesuffix(f"-{run_id}")
            pods[f"{logical_ns}/{info.name}"] = info
        yield Deployed(run_id, pods)
    finally:
        for ns in namespaces:
            cluster.delete_namespace(ns)


@pytest.fixture
def apply_policies(cluster: Cluster, deployed: Deployed) -> Iterator[Callable[[list[Any]], None]]:
    """Replace this run's NetworkPolicies with the given ones; none are left afterwards."""

    def apply(policies: list[Any]) -> None:
        cluster.delete_policies(deployed.namespaces)
        for p in policies:
            cluster.create(p)

    yield apply
    cluster.delete_policies(deployed.namespaces)
