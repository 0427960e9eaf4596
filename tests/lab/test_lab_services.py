"""The lab's kube-proxy emulation and DNS, with real packets: ClusterIP DNAT with random
backend selection, per-pod Services matching pod probes, DNS answers through the DNS Service,
and NodePort traffic from outside the cluster (SNATed or not) judged by ingress policy."""

from __future__ import annotations

import pytest

from enforcer.commands.lab import check_documents, probe_documents
from enforcer.lab import dns, lab
from enforcer.lab import services as svcs
from enforcer.lab.probe import answered_by
from enforcer.netnsutil import run_in_netns
from tests.lab import service_checks, upstream
from tests.lab.outside import outside_host
from tests.lab.service_manifests import (
    cluster_ip,
    external_service,
    node_port_to_c,
    web_cluster,
    web_pods,
)

pytestmark = pytest.mark.kernel


def test_per_pod_services_probe_like_pods_and_dns_answers(lab_factory, write_manifests) -> None:
    state = lab_factory(
        [write_manifests(upstream.cluster())], nodes=2, services="per-pod", dns=True
    )
    for port, proto in upstream.PROBED:
        # Nothing is denied here, so a generous timeout costs nothing (loaded CI machines).
        direct = probe_documents(state, port, proto, 4, 2.0)
        through = probe_documents(state, port, proto, 4, 2.0, via="service")
        assert check_documents(state, through, 4) == []
        # Every pod has its Service, and with no policy everything (hairpin too) connects.
        assert through[0]["matrix"] == direct[0]["matrix"]
        assert all(all(row.values()) for row in through[0]["matrix"].values())
    netns = state.pods["x/a"]["netns"]
    assert dns.resolve(netns, svcs.DNS_V4, "s-b.y.svc.cluster.local") == [
        cluster_ip(state, "y/s-b")
    ]
    assert dns.resolve(netns, svcs.DNS_V4, "kube-dns.kube-system.svc.cluster.local") == [
        svcs.DNS_V4
    ]
    assert dns.resolve(netns, svcs.DNS_V4, "missing.y.svc.cluster.local") is None


def test_cluster_ip_spreads_connections_over_backends_on_both_nodes(
    lab_factory, write_manifests
) -> None:
    state = lab_factory([write_manifests(web_cluster())], nodes=2)
    service_checks.cluster_ip_spreads_over_backends(state)


def test_node_port_snat_from_outside_is_judged_as_the_node_ip_not_as_node_traffic(
    lab_factory, write_manifests
) -> None:
    objects = [
        *web_pods(),
        node_port_to_c("web", 8080, 30080),
        node_port_to_c("web-local", 8081, 30081, externalTrafficPolicy="Local"),
    ]
    state = lab_factory([write_manifests(objects)], nodes=2)
    service_checks.node_port_from_outside(state, write_manifests, 30080, 30081)


def test_a_service_with_an_endpoint_outside_the_cluster(lab_factory, write_manifests) -> None:
    state = lab_factory([write_manifests(web_cluster())], nodes=2)
    with outside_host(state, 9999) as out:
        lab.apply(state, [write_manifests(external_service(out.ip, 9999))])
        netns = state.pods["x/client"]["netns"]
        assert answered_by(netns, cluster_ip(state, "x/ext"), 443) == "outside"
        assert run_in_netns(netns, lambda: True)
