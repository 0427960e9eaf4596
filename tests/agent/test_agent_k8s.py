"""The agent against a test API server speaking the real list/watch protocol, enforcing with
the real datapath: every cluster change shows in what real connections can do."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from enforcer.netnsutil import run_in_netns
from tests.agent.harness import NodeHarness, eventually, namespace, pod, policy, probe_loop

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeHarness]:
    h = NodeHarness(Path(tmp_path_factory.mktemp("agent")))
    try:
        yield h.start()
    finally:
        h.stop()


@pytest.fixture
def clean(node: NodeHarness) -> Iterator[NodeHarness]:
    """Each test starts and ends with no policies and the original labels."""
    yield node
    for obj in node.api.objects("NetworkPolicy"):
        node.api.delete("NetworkPolicy", obj["metadata"]["name"], obj["metadata"]["namespace"])
    node.api.apply(namespace("y"))
    for key, labels in (("x/a", {"app": "a"}), ("x/b", {"app": "b"}), ("y/c", {"app": "c"})):
        ns, name = key.split("/")
        node.api.apply(pod(ns, name, node.ip(key), labels))
    node.expect("y/c", "x/a", True)


DENY_A_EXCEPT_B = policy(
    "x",
    "a-from-b",
    {
        "podSelector": {"matchLabels": {"app": "a"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "b"}}}]}],
    },
)


def test_initial_sync_enforces_every_local_pod(clean: NodeHarness) -> None:
    status = clean.status()
    assert status["ready"] is True
    assert sorted(ep["pod"] for ep in status["endpoints"]) == ["x/a", "x/b", "y/c"]
    assert all(ep["ifindex"] and ep["generation"] for ep in status["endpoints"])
    assert clean.reach("x/a", "y/c") and clean.reach("y/c", "x/a", 81, "UDP")


def test_policy_add_update_delete(clean: NodeHarness) -> None:
    clean.api.create(DENY_A_EXCEPT_B)
    clean.expect("y/c", "x/a", False)
    assert clean.reach("x/b", "x/a")
    # Update: only UDP 81 from b.
    spec = dict(DENY_A_EXCEPT_B["spec"])
    spec["ingress"] = [{**spec["ingress"][0], "ports": [{"protocol": "UDP", "port": 81}]}]
    clean.api.update(policy("x", "a-from-b", spec))
    clean.expect("x/b", "x/a", False)
    assert clean.reach("x/b", "x/a", 81, "UDP")
    clean.api.delete("NetworkPolicy", "a-from-b", "x")
    clean.expect("y/c", "x/a", True)


def test_pod_label_change(clean: NodeHarness) -> None:
    clean.api.create(DENY_A_EXCEPT_B)
    clean.expect("x/b", "x/a", True)
    clean.api.apply(pod("x", "b", clean.ip("x/b"), {"app": "other"}))
    clean.expect("x/b", "x/a", False)


def test_namespace_relabel(clean: NodeHarness) -> None:
    clean.api.create(
        policy(
            "x",
            "from-blue",
            {
                "podSelector": {},
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}]}],
            },
        )
    )
    clean.expect("y/c", "x/a", False)
    clean.api.apply(namespace("y", {"team": "blue"}))
    clean.expect("y/c", "x/a", True)
    assert not clean.reach("x/b", "x/a")  # x is not blue


def test_invalid_policy_keeps_previous_version(clean: NodeHarness) -> None:
    clean.api.create(DENY_A_EXCEPT_B)
    clean.expect("y/c", "x/a", False)
    bad = policy(
        "x",
        "a-from-b",
        {
            "podSelector": {"matchLabels": {"app": "a"}},
            "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}],
        },
    )
    clean.api.update(bad)
    eventually(
        lambda: any("a-from-b" in e and "cidr" in e for e in clean.status()["invalid_objects"]),
        5,
        "invalid object reported with its name and field",
    )
    # The previous valid version is still in force: c denied, b allowed.
    assert not clean.reach("y/c", "x/a")
    assert clean.reach("x/b", "x/a")
    assert 'enforcer_invalid_objects_total{kind="NetworkPolicy"}' in clean.metrics()


def test_ip_reuse_by_new_uid(clean: NodeHarness) -> None:
    clean.api.create(DENY_A_EXCEPT_B)
    clean.expect("x/b", "x/a", True)
    # x/b goes away and a different pod (new UID, other labels) gets its IP.
    clean.api.delete("Pod", "b", "x")
    clean.api.create(pod("x", "b2", clean.ip("x/b"), {"app": "intruder"}))
    clean.expect("x/b", "x/a", False)  # probed from the same namespace: the IP's new owner
    # And back: x/b again, new UID, often in the batch that deletes b2. Its entry stays.
    clean.api.delete("Pod", "b2", "x")
    clean.api.apply(pod("x", "b", clean.ip("x/b"), {"app": "b"}))
    clean.expect("x/b", "x/a", True)


def test_watch_expiry_relists_and_converges(clean: NodeHarness) -> None:
    clean.api.create(DENY_A_EXCEPT_B)
    clean.expect("y/c", "x/a", False)
    # Changes while the history is compacted and every stream cut: the agent must relist.
    clean.api.drop_connections()
    clean.api.delete("NetworkPolicy", "a-from-b", "x")
    clean.api.expire_history()
    clean.expect("y/c", "x/a", True)
    assert "enforcer_watch_restarts_total" in clean.metrics()


def test_api_outage_keeps_enforcing_then_converges(clean: NodeHarness) -> None:
    from enforcer.netnsutil import run_in_netns

    clean.api.create(DENY_A_EXCEPT_B)
    clean.expect("y/c", "x/a", False)
    run_in_netns(clean.node.netns, clean.api.stop)
    try:
        eventually(lambda: not clean.ready(), 30, "readyz reports not ready during the outage")
        assert not clean.reach("y/c", "x/a")  # last known state still enforced
        assert clean.reach("x/b", "x/a")
        clean.api.delete("NetworkPolicy", "a-from-b", "x")  # changed while we cannot see it
    finally:
        run_in_netns(clean.node.netns, clean.api.start)
    eventually(clean.ready, 30, "ready again after the outage")
    clean.expect("y/c", "x/a", True)


def test_kill_9_restart_under_probe_loop(clean: NodeHarness) -> None:
    """No allowed probe fails and no denied probe passes while the agent is killed and
    restarted: the datapath stays attached and pinned, the new agent adopts it."""
    clean.api.create(DENY_A_EXCEPT_B)
    clean.expect("y/c", "x/a", False)
    clean.expect("x/b", "x/a", True)
    with probe_loop(clean):
        time.sleep(0.5)
        clean.kill_agent()
        time.sleep(0.5)
        clean.start_agent()
        time.sleep(1.0)


def _dropped(node: NodeHarness, reason: str) -> float:
    """All drops the agent exports with this reason, whichever pod they are counted against."""
    return sum(
        s.value
        for family in text_string_to_metric_families(node.metrics())
        for s in family.samples
        if s.name == "enforcer_drop_count_total" and s.labels.get("reason") == reason
    )


def test_a_pod_added_is_never_taken_for_a_spoofer(clean: NodeHarness) -> None:
    """The agent writes a pod's addresses before its table, so from the moment its table is
    in, its packets are its own. x/b sends to x/a without pause while it is deleted (its
    interface lingers: the unknown-endpoint verdict) and created again."""
    sock = run_in_netns(clean.pods["x/b"].netns, lambda: socket.socket(socket.AF_INET,
                                                                        socket.SOCK_DGRAM))
    stop = threading.Event()

    def stream() -> None:
        while not stop.is_set():
            sock.sendto(b"stream", (clean.ip("x/a"), 81))
            time.sleep(0.0001)

    def enforced(key: str) -> bool:
        return any(ep["pod"] == key and ep["generation"] for ep in clean.status()["endpoints"])

    spoofed, unknown = _dropped(clean, "spoofed_source"), _dropped(clean, "unknown_endpoint")
    sender = threading.Thread(target=stream, daemon=True)
    sender.start()
    try:
        for _ in range(6):  # the window it guards is milliseconds wide: look more than once
            clean.api.delete("Pod", "b", "x")
            eventually(lambda: not enforced("x/b"), 5, "x/b removed")
            time.sleep(0.1)
            clean.api.create(pod("x", "b", clean.ip("x/b"), {"app": "b"}))
            eventually(lambda: enforced("x/b"), 5, "x/b enforced again")
            time.sleep(0.1)
    finally:
        stop.set()
        sender.join(5)
        sock.close()
    assert _dropped(clean, "unknown_endpoint") > unknown  # the stream ran through the gaps
    assert _dropped(clean, "spoofed_source") == spoofed
