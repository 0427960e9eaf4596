"""Differential test: random policies applied to a running lab; the kernel's verdicts on real
packets must equal `enforcer analyze`'s model, pair by pair."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enforcer.commands.lab import check_documents, probe_ports
from enforcer.lab import lab
from tests.lab import upstream

pytestmark = pytest.mark.kernel

LABELS = {"pod": ["a", "b", "c"], "ns": ["x", "y", "z"]}


def selector(key: str) -> st.SearchStrategy[dict[str, Any]]:
    values = LABELS[key]
    labels = st.builds(lambda v: {"matchLabels": {key: v}}, st.sampled_from(values))
    expr = st.builds(
        lambda op, vs: {"matchExpressions": [{"key": key, "operator": op, "values": vs}]},
        st.sampled_from(["In", "NotIn"]),
        st.lists(st.sampled_from(values), min_size=1, max_size=2, unique=True),
    )
    exists = st.builds(
        lambda op: {"matchExpressions": [{"key": key, "operator": op}]},
        st.sampled_from(["Exists", "DoesNotExist"]),
    )
    return st.one_of(st.just({}), labels, expr, exists)


def peer(ip_of: dict[str, str]) -> st.SearchStrategy[dict[str, Any]]:
    ip_block = st.builds(
        lambda pod, wide: (
            {"ipBlock": {"cidr": "198.18.0.0/15", "except": [f"{ip_of[pod]}/32"]}}
            if wide
            else {"ipBlock": {"cidr": f"{ip_of[pod]}/32"}}
        ),
        st.sampled_from(sorted(ip_of)),
        st.booleans(),
    )
    pods = st.builds(lambda s: {"podSelector": s}, selector("pod"))
    nss = st.builds(lambda s: {"namespaceSelector": s}, selector("ns"))
    both = st.builds(
        lambda p, n: {"podSelector": p, "namespaceSelector": n}, selector("pod"), selector("ns")
    )
    return st.one_of(pods, nss, both, ip_block)


PORTS = st.one_of(
    st.just({"port": 80}),
    st.just({"protocol": "UDP", "port": 81}),
    st.just({"protocol": "TCP", "port": 79, "endPort": 81}),
    st.just({"port": "serve-80-tcp"}),
    st.just({"protocol": "UDP", "port": "serve-81-udp"}),
    st.just({"protocol": "UDP"}),
)


def rule(ip_of: dict[str, str], key: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            key: st.lists(peer(ip_of), max_size=2),
            "ports": st.lists(PORTS, max_size=2),
        },
    )


def policies(ip_of: dict[str, str]) -> st.SearchStrategy[list[dict[str, Any]]]:
    spec = st.fixed_dictionaries(
        {"podSelector": selector("pod")},
        optional={
            "policyTypes": st.sampled_from([["Ingress"], ["Egress"], ["Ingress", "Egress"]]),
            "ingress": st.lists(rule(ip_of, "from"), max_size=2),
            "egress": st.lists(rule(ip_of, "to"), max_size=2),
        },
    )
    one = st.builds(lambda ns, s: (ns, s), st.sampled_from(["x", "y", "z"]), spec)
    return st.lists(one, min_size=1, max_size=3).map(
        lambda items: [upstream.policy(f"p{i}", ns, s) for i, (ns, s) in enumerate(items)]
    )


@pytest.fixture(scope="module")
def running_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lab.LabState]:
    folder = Path(tmp_path_factory.mktemp("difflab"))
    manifests = folder / "cluster.yaml"
    manifests.write_text(yaml.safe_dump_all(upstream.cluster()))
    name = f"d{secrets.token_hex(3)}"
    try:
        yield lab.up([manifests], name, "routed", nodes=2)
    finally:
        lab.down(name)


_IPS: dict[str, str] = {}


def _ip_of(state: lab.LabState) -> dict[str, str]:
    if not _IPS:
        _IPS.update({k: p["ips"][0] for k, p in state.pods.items()})
    return _IPS


def test_random_policies_kernel_equals_model(
    running_lab: lab.LabState, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = Path(tmp_path_factory.mktemp("diffpolicies"))

    @settings(
        max_examples=15,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )
    @given(policies(_ip_of(running_lab)))
    def check(objs: list[dict[str, Any]]) -> None:
        path = folder / "policies.yaml"
        path.write_text(yaml.safe_dump_all(objs))
        lab.apply(running_lab, [path])
        try:
            docs = probe_ports(running_lab, [(80, "TCP"), (81, "UDP")], 4, 0.4)
            assert check_documents(running_lab, docs, 4) == [], yaml.safe_dump_all(objs)
        finally:
            lab.delete(running_lab, [path])

    check()
