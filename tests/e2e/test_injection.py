"""Crafted packets injected from inside a pod (the bypass checklist's fragments and IPv6
extension headers): what the policy denies never reaches the server, whatever the packets
look like; what it allows still arrives when the packets are well formed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .expected import model_matrix
from .kube import Cluster, Deployed, inpod_command
from .probing import converge, describe
from .workloads import TOOLBOX

SOURCE, TARGET = "z/c", "x/a"
ALLOWED_PORT, DENIED_PORT = 80, 81

# Well-formed packets of an allowed flow must pass: delivered exactly when the model allows.
EXACT = ["ipv4-fragments", "ipv6-destopt", "ipv6-hop-destopt", "ipv6-fragments"]
# The datapath may fail closed on these even when allowed; it must never let a denied one in.
NEVER_WHEN_DENIED = ["ipv4-fragments-reversed", "ipv4-tiny-first-fragment"]
# Beyond the parser's bound on extension headers: dropped on any port.
NEVER = ["ipv6-too-many-destopts"]


def _policy(namespace: str) -> dict[str, Any]:
    """x/a admits UDP 80 from anywhere, nothing else."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "udp-80-only", "namespace": namespace},
        "spec": {
            "podSelector": {"matchLabels": {"pod": "a"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"protocol": "UDP", "port": ALLOWED_PORT}]}],
        },
    }


@pytest.fixture(scope="module")
def verdicts(cluster: Cluster, deployed: Deployed) -> Iterator[dict[tuple[int, int], bool]]:
    """The policy in place and enforced; the model's verdict per (port, family)."""
    target = deployed.pods[TARGET]
    cluster.delete_policies(deployed.namespaces)
    cluster.create(_policy(target.namespace))
    try:
        objects = cluster.read_back(deployed.namespaces)
        src, dst = deployed.real(SOURCE), deployed.real(TARGET)
        out = {
            (port, family): model_matrix(objects, [src, dst], port, "UDP", family)[src][dst]
            for port in (ALLOWED_PORT, DENIED_PORT)
            for family in (4, 6)
        }
        assert out[(ALLOWED_PORT, 4)] and not out[(DENIED_PORT, 4)]
        # Ordinary datagrams first: the policy is enforced before anything is crafted.
        expected = {
            (port, "UDP", family): {SOURCE: {TARGET: ok}} for (port, family), ok in out.items()
        }
        wrong = converge(cluster, deployed, expected)
        assert not wrong, describe(wrong)
        yield out
    finally:
        cluster.delete_policies(deployed.namespaces)


def _inject(cluster: Cluster, deployed: Deployed, variant: str, port: int) -> bool:
    family = 6 if variant.startswith("ipv6") else 4
    dst = deployed.pods[TARGET].ip(family)
    assert dst, f"{TARGET} has no IPv{family} address: the cluster must be dual-stack"
    spec = {"dst": dst, "port": port, "variant": variant}
    result = cluster.exec_json(deployed.pods[SOURCE], TOOLBOX, inpod_command("inject", spec))
    return bool(result["delivered"])


@pytest.mark.parametrize("port", [ALLOWED_PORT, DENIED_PORT])
@pytest.mark.parametrize("variant", EXACT)
def test_well_formed_crafted_packets_follow_the_policy(
    variant: str, port: int, cluster: Cluster, deployed: Deployed, verdicts: Any
) -> None:
    family = 6 if variant.startswith("ipv6") else 4
    assert _inject(cluster, deployed, variant, port) == verdicts[(port, family)]


@pytest.mark.parametrize("variant", NEVER_WHEN_DENIED)
def test_evasive_fragments_never_reach_a_denied_port(
    variant: str, cluster: Cluster, deployed: Deployed, verdicts: Any
) -> None:
    assert not verdicts[(DENIED_PORT, 4)]
    assert not _inject(cluster, deployed, variant, DENIED_PORT)


@pytest.mark.parametrize("port", [ALLOWED_PORT, DENIED_PORT])
@pytest.mark.parametrize("variant", NEVER)
def test_too_many_extension_headers_are_dropped_on_any_port(
    variant: str, port: int, cluster: Cluster, deployed: Deployed, verdicts: Any
) -> None:
    assert not _inject(cluster, deployed, variant, port)
