"""ClusterState: indexes follow every update; pending namespaces; IP ownership."""

from __future__ import annotations

from ipaddress import ip_network

from netpol_builders import cluster, ns, pod, policy

from enforcer.model.loader import parse_object
from enforcer.model.objects import IPBlock, Namespace, Pod, PolicyPeer


def obj(doc):
    return parse_object(doc, "test")


def test_label_change_moves_a_pod_between_selections():
    s = cluster(
        ns("x"),
        pod("x", "a", {"app": "web"}, ips=["10.0.0.1"]),
        policy("x", "p", podSelector={"matchLabels": {"app": "web"}}),
    )
    p = s.policies["x/p"]
    assert s.pods_selected_by(p) == {"x/a"}
    assert [q.key for q in s.policies_selecting("x/a")] == ["x/p"]
    s.upsert(obj(pod("x", "a", {"app": "db"}, ips=["10.0.0.1"])))
    assert s.pods_selected_by(p) == set() and s.policies_selecting("x/a") == []
    s.remove("Pod", "x", "a")
    assert "x/a" not in s.pods and s.pods_by_ip("10.0.0.1") is None


def test_namespace_label_change_updates_namespace_selector_peers():
    s = cluster(
        ns("x"),
        ns("y", team="red"),
        pod("y", "a"),
        pod("x", "dst"),
        policy(
            "x", "p", ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"team": "red"}}}]}]
        ),
    )
    p = s.policies["x/p"]
    peer = p.ingress[0].peers[0]
    assert s.peer_pods(p, peer) == {"y/a"}
    s.upsert(Namespace("y", {"team": "blue"}))
    assert s.peer_pods(p, peer) == set()
    s.remove("Namespace", None, "y")  # pods keep the pending identity of their namespace field
    assert s.namespace_identity("y").labels == {"kubernetes.io/metadata.name": "y"}
    assert "y" in s.namespace_names()
    by_name = PolicyPeer(
        namespace_selector=parse_object(
            policy("x", "q", podSelector={"matchLabels": {"kubernetes.io/metadata.name": "y"}})
        ).pod_selector
    )
    assert s.peer_pods(p, by_name) == {"y/a"}
    s.remove("Pod", "y", "a")
    assert "y" not in s.namespace_names()


def test_pending_namespace_is_selectable_by_name_label_only():
    s = cluster(
        pod("ghost", "a"),
        policy(
            "x",
            "p",
            ingress=[
                {
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "ghost"}
                            }
                        },
                        {"namespaceSelector": {"matchLabels": {"team": "red"}}},
                    ]
                }
            ],
        ),
    )
    p = s.policies["x/p"]
    assert s.peer_pods(p, p.ingress[0].peers[0]) == {"ghost/a"}
    assert s.peer_pods(p, p.ingress[0].peers[1]) == set()


def test_policy_removal_and_replacement():
    s = cluster(ns("x"), pod("x", "a"), policy("x", "p"))
    s.upsert(obj(policy("x", "p", podSelector={"matchLabels": {"app": "none"}})))
    assert s.policies_selecting("x/a") == []
    s.remove("NetworkPolicy", "x", "p")
    assert not s.policies and s.policies_in("x") == []


def test_ip_reuse_keeps_the_other_owner():
    s = cluster(ns("x"), pod("x", "old", ips=["10.0.0.9"]))
    s.upsert(obj(pod("x", "new", ips=["10.0.0.9"])))
    assert s.pods_by_ip("10.0.0.9") == "x/new"
    s.remove("Pod", "x", "old")  # deleting the old pod must not take the IP from the new one
    assert s.pods_by_ip("10.0.0.9") == "x/new"
    s.upsert(obj(pod("x", "old", ips=["10.0.0.9"])))
    s.remove("Pod", "x", "old")
    assert s.pods_by_ip("10.0.0.9") == "x/new"


def test_terminated_pod_releases_its_ip_and_selection():
    s = cluster(ns("x"), pod("x", "job", {"app": "job"}, ips=["10.0.0.7"]), policy("x", "p"))
    s.upsert(obj(pod("x", "job", {"app": "job"}, ips=["10.0.0.7"], phase="Succeeded")))
    assert s.pods_by_ip("10.0.0.7") is None
    assert s.pods_selected_by(s.policies["x/p"]) == set()


def test_ip_block_pods_and_planned_mode():
    s = cluster(
        ns("x"), pod("x", "a", ips=["10.1.0.1", "fd00::1"]), pod("x", "b", ips=["10.2.0.1"])
    )
    block = IPBlock(ip_network("10.0.0.0/8"), (ip_network("10.2.0.0/16"),))
    assert s.ip_block_pods(block) == {"x/a"}
    assert s.ip_block_pods(block, family=6) == set()
    planned = cluster()
    planned.planned_pods = True
    planned.upsert(Pod("x", "noip"))
    assert planned.endpoint_keys() == ["x/noip"]
    assert cluster(pod("x", "noip", ips=[])).endpoint_keys() == []


def test_generation_moves_on_every_change():
    s = cluster()
    g = s.generation
    s.upsert(Namespace("x"))
    s.remove("Namespace", None, "x")
    assert s.generation == g + 2
