"""The e2e suite's expectations, computed offline: objects shaped like those read back from a
cluster (running pods with IPv4 and IPv6 addresses) give the same matrix through the Python
API the suite calls and through `enforcer analyze`, and the cases are not trivial."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.expected import analyze_cli, model_matrix
from tests.e2e.workloads import model, policy_cases

RUN = "ci"


def _running_cluster() -> tuple[list[dict[str, Any]], dict[str, str]]:
    objects = model(RUN)
    ip_of = {}
    for i, obj in enumerate(o for o in objects if o["kind"] == "Pod"):
        v4, v6 = f"10.244.{i % 3}.{10 + i}", f"fd00:10:244:{i % 3}::{10 + i:x}"
        obj["spec"]["nodeName"] = f"node-{i % 3}"
        obj["status"] = {"phase": "Running", "podIP": v4, "podIPs": [{"ip": v4}, {"ip": v6}]}
        logical_ns = obj["metadata"]["namespace"].removesuffix(f"-{RUN}")
        ip_of[f"{logical_ns}/{obj['metadata']['name']}"] = v4
    return objects, ip_of


CASES = [
    "default-deny-all",
    "pod-and-namespace-selector",
    "named-port-ingress",
    "egress-ipblock-pod-ip",
]


@pytest.mark.parametrize("case", CASES)
def test_python_api_and_enforcer_analyze_agree_on_a_case(case: str) -> None:
    objects, ip_of = _running_cluster()
    objects += policy_cases(ip_of, RUN)[case]
    keys = sorted(
        f"{o['metadata']['namespace']}/{o['metadata']['name']}"
        for o in objects
        if o["kind"] == "Pod"
    )
    for port, protocol in ((80, "TCP"), (81, "UDP")):
        cli = analyze_cli(objects, port, protocol)
        assert cli == model_matrix(objects, keys, port, protocol, None)
        verdicts = [ok for row in cli.values() for ok in row.values()]
        assert len(verdicts) == 81
    # The case denies something on some probe the suite makes (else it would prove nothing).
    denied = any(
        not ok
        for port, protocol, family in (
            (80, "TCP", 4),
            (81, "TCP", 4),
            (80, "UDP", 4),
            (81, "UDP", 4),
        )
        for row in model_matrix(objects, keys, port, protocol, family).values()
        for ok in row.values()
    )
    assert denied


def test_ipblock_cases_differ_between_families() -> None:
    """An IPv4 ipBlock admits nothing over IPv6: the suite's IPv6 probes check that."""
    objects, ip_of = _running_cluster()
    objects += policy_cases(ip_of, RUN)["egress-ipblock-pod-ip"]
    src, dst = f"x-{RUN}/b", f"x-{RUN}/a"
    v4 = model_matrix(objects, [src, dst], 80, "TCP", 4)
    v6 = model_matrix(objects, [src, dst], 80, "TCP", 6)
    assert v4[src][dst] is True and v6[src][dst] is False
