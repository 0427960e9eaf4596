"""Selection by service account with real packets: manifests parsed by the model, compiled,
written to the session's datapath as the agent writes them, then TCP connections. The account
a pod runs as decides; a label it writes under the reserved key does not; a pod recreated
under another account moves to that account's side of the policy."""

from __future__ import annotations

from typing import Any

import pytest

from enforcer.compiler import Compiler
from enforcer.compiler.delta import CompileDelta
from enforcer.model.cluster import ClusterState
from enforcer.model.loader import parse_object
from enforcer.model.objects import SERVICE_ACCOUNT_LABEL, ModelObject
from enforcer.topology import Pod
from tests.datapath.conftest import Env
from tests.datapath.net import TcpServer, tcp_connect

pytestmark = pytest.mark.kernel

POLICY = {
    "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
    "metadata": {"namespace": "x", "name": "db-from-billing"},
    "spec": {"podSelector": {"matchLabels": {"app": "db"}},
             "ingress": [{"from": [{"podSelector": {
                 "matchLabels": {SERVICE_ACCOUNT_LABEL: "billing"}}}]}]},
}


def _pod(pod: Pod, account: str | None, labels: dict[str, str]) -> ModelObject:
    spec: dict[str, Any] = {"containers": []}
    if account is not None:
        spec["serviceAccountName"] = account
    obj = parse_object({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": "x", "name": pod.name, "uid": f"{pod.name}-{account}",
                     "labels": labels},
        "spec": spec,
        "status": {"phase": "Running",
                   "podIPs": [{"ip": str(pod.ipv4)}, {"ip": str(pod.ipv6)}]},
    })
    assert obj is not None
    return obj


def _write(env: Env, pods: dict[str, Pod], delta: CompileDelta) -> None:
    """Identities first, then the endpoints' tables (the order of the agent's write plan)."""
    env.dp.set_identities(dict(delta.identity_changes))
    for key, policy in delta.endpoints.items():
        env.policy(pods[key], policy)


def test_the_account_decides_not_the_label(routed_env: Env) -> None:
    env = routed_env
    db, billing, forger = env.pod("db"), env.pod("billing"), env.pod("forger")
    pods = {f"x/{p.name}": p for p in (db, billing, forger)}
    state = ClusterState()
    for obj in (
        parse_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}),
        _pod(db, "db", {"app": "db"}),
        _pod(billing, "billing", {"app": "client"}),
        # Runs as `default`, claims `billing` by the label: the model overwrites it.
        _pod(forger, None, {"app": "client", SERVICE_ACCOUNT_LABEL: "billing"}),
        parse_object(POLICY),
    ):
        assert obj is not None
        state.upsert(obj)
    compiler = Compiler(state, None)
    _write(env, pods, compiler.full())
    with TcpServer(db, 4, 80), TcpServer(db, 6, 80):
        for family in (4, 6):
            assert tcp_connect(billing, db, family, 80)
            assert not tcp_connect(forger, db, family, 80, timeout=0.5)
        # The forger's pod is recreated under the account it claimed: now it is billing.
        moved = _pod(forger, "billing", {"app": "client"})
        state.upsert(moved)
        _write(env, pods, compiler.on_upsert(moved))
        assert tcp_connect(forger, db, 4, 80)
        # ... and back to `default`: denied again.
        back = _pod(forger, None, {"app": "client"})
        state.upsert(back)
        _write(env, pods, compiler.on_upsert(back))
        assert not tcp_connect(forger, db, 4, 80, timeout=0.5)
