"""What lint calls shadowed among cluster-policy rules: coverage judged on what is written."""

from __future__ import annotations

from ipaddress import ip_network

from enforcer.analysis.lint_cluster import rule_covers
from enforcer.model.clusterpolicy import ClusterPeer, ClusterPort, ClusterRule, NamespacedPods
from enforcer.model.objects import LabelSelector

ALL = LabelSelector()
TEAM_A = LabelSelector({"team": "a"})
APP_X = LabelSelector({"app": "x"})


def rule(*peers: ClusterPeer, ports: tuple[ClusterPort, ...] | None = None) -> ClusterRule:
    return ClusterRule("", "Deny", peers, ports)


def test_selectors() -> None:
    everything = rule(ClusterPeer(namespaces=ALL))
    team_pods = rule(ClusterPeer(pods=NamespacedPods(TEAM_A, APP_X)))
    assert rule_covers(everything, team_pods)
    assert not rule_covers(team_pods, everything)
    assert rule_covers(rule(ClusterPeer(namespaces=TEAM_A)), team_pods)
    assert not rule_covers(rule(ClusterPeer(pods=NamespacedPods(ALL, APP_X))),
                           rule(ClusterPeer(namespaces=TEAM_A)))
    # every peer of the later rule must be covered by some peer of the earlier one
    assert not rule_covers(rule(ClusterPeer(namespaces=TEAM_A)),
                           rule(ClusterPeer(namespaces=TEAM_A), ClusterPeer(nodes=ALL)))


def test_networks_nodes_and_ports() -> None:
    wide = rule(ClusterPeer(networks=(ip_network("10.0.0.0/8"), ip_network("::/0"))))
    assert rule_covers(wide, rule(ClusterPeer(networks=(ip_network("10.1.0.0/16"),))))
    assert not rule_covers(wide, rule(ClusterPeer(networks=(ip_network("11.0.0.0/8"),))))
    assert rule_covers(rule(ClusterPeer(nodes=ALL)), rule(ClusterPeer(nodes=TEAM_A)))
    tcp = ClusterPort("TCP", 1, 1000)
    assert rule_covers(rule(ClusterPeer(namespaces=ALL), ports=(tcp,)),
                       rule(ClusterPeer(namespaces=ALL), ports=(ClusterPort("TCP", 80, 80),)))
    assert not rule_covers(rule(ClusterPeer(namespaces=ALL), ports=(tcp,)),
                           rule(ClusterPeer(namespaces=ALL), ports=(ClusterPort("UDP", 80, 80),)))
    assert not rule_covers(rule(ClusterPeer(namespaces=ALL), ports=(tcp,)),
                           rule(ClusterPeer(namespaces=ALL)))  # all ports
    assert not rule_covers(rule(ClusterPeer(namespaces=ALL), ports=(tcp,)),
                           rule(ClusterPeer(namespaces=ALL), ports=(ClusterPort(named="web"),)))
