"""Upstream's NetworkPolicy cases on a real cluster: every pair probed with real connections
(TCP and UDP, ports 80 and 81, IPv4 and IPv6) must match the model's verdicts computed from
the objects read back from the API server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .expected import analyze_cli, model_matrix
from .kube import Cluster, Deployed
from .probing import Probe, converge, describe
from .workloads import policy_cases

PROBES: list[Probe] = [
    (80, "TCP", 4),
    (81, "TCP", 4),
    (80, "UDP", 4),
    (81, "UDP", 4),
    (80, "TCP", 6),
    (81, "UDP", 6),
]
# Names only (the real cases need the pods' addresses, known once they run).
_PLACEHOLDER_IPS = {f"{n}/{p}": "192.0.2.1" for n in "xyz" for p in "abc"}
CASES = ["no-policies", *policy_cases(_PLACEHOLDER_IPS, "placeholder")]


@pytest.mark.parametrize("case", CASES)
def test_cluster_matches_the_model(
    case: str,
    cluster: Cluster,
    deployed: Deployed,
    apply_policies: Callable[[list[Any]], None],
) -> None:
    ip_of = {key: info.ipv4 or "" for key, info in deployed.pods.items()}
    policies = [] if case == "no-policies" else policy_cases(ip_of, deployed.run_id)[case]
    apply_policies(policies)

    objects = cluster.read_back(deployed.namespaces)
    assert sum(o["kind"] == "NetworkPolicy" for o in objects) == len(policies)
    real_keys = [deployed.real(k) for k in sorted(deployed.pods)]
    expected = {}
    for port, protocol, family in PROBES:
        matrix = model_matrix(objects, real_keys, port, protocol, family)
        expected[(port, protocol, family)] = {
            deployed.logical(src): {deployed.logical(dst): ok for dst, ok in row.items()}
            for src, row in matrix.items()
        }

    # The model through `enforcer analyze` itself agrees with the Python API on these objects.
    for port, protocol in ((80, "TCP"), (81, "UDP")):
        cli = analyze_cli(objects, port, protocol)
        assert cli == model_matrix(objects, real_keys, port, protocol, None), (port, protocol)

    wrong = converge(cluster, deployed, expected)
    assert not wrong, f"case {case}:\n{describe(wrong)}"
