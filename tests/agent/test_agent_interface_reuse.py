"""A pod deleted and another created on the same interface with the same address, both in one
batch of events (the loop coalesces what queues while it is busy): the new pod's table is the
one in force afterwards. The removal of the old pod's endpoint, which a write plan puts last,
used to take the new pod's entry with it, leaving the interface to the unknown-endpoint verdict
(deny) until that pod's table was written again or the agent restarted;
tests/agent/test_agent_k8s.py met it now and then after its address-reuse test. Pure: the
loop's `step` with a datapath held in memory."""

from __future__ import annotations

from typing import Any

from enforcer.agent.http import EventHub
from enforcer.agent.metrics import AgentMetrics
from enforcer.agent.runtime import Agent
from enforcer.sources.base import EventType, SourceEvent
from tests.agent.fakes import IdleSource, MemoryDatapath, StaticInterfaces
from tests.sources.builders import namespace, pod, policy

NODE = "n1"
A_IP, B_IP = "10.0.0.1", "10.0.0.2"
A_IF, B_IF = 101, 102
# x/a takes ingress from app=b only: x/b's identity and its own table both matter.
A_FROM_B = policy("a-from-b", "x", {
    "podSelector": {"matchLabels": {"app": "a"}},
    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "b"}}}]}],
})


def _event(etype: EventType, obj: dict[str, Any]) -> tuple[float, SourceEvent]:
    return (0.0, SourceEvent(etype, obj["kind"], obj, None))


def _pod(name: str, ip: str, app: str, uid: str) -> dict[str, Any]:
    return pod(name, "x", {"app": app}, ip, node=NODE, uid=uid)


def _agent(datapath: MemoryDatapath) -> Agent:
    interfaces = StaticInterfaces({A_IP: A_IF, B_IP: B_IF})
    agent = Agent(NODE, IdleSource(), datapath, interfaces,  # type: ignore[arg-type]
                  AgentMetrics(), EventHub())
    agent.step([
        _event(EventType.ADDED, namespace("x")),
        _event(EventType.ADDED, _pod("a", A_IP, "a", "uid-a")),
        _event(EventType.ADDED, _pod("b", B_IP, "b", "uid-b")),
        _event(EventType.ADDED, A_FROM_B),
        (0.0, SourceEvent(EventType.SYNCED, None, None)),
    ])
    return agent


def test_a_pod_recreated_on_its_interface_in_the_batch_deleting_the_last_owner_keeps_it() -> None:
    datapath = MemoryDatapath()
    agent = _agent(datapath)
    assert agent.pod_for_ifindex(B_IF) == "x/b" and B_IF in datapath.tables
    b_table = datapath.tables[B_IF]
    # x/b goes; another pod (other UID and labels) takes its address on the same interface.
    agent.step([_event(EventType.DELETED, _pod("b", B_IP, "b", "uid-b")),
                _event(EventType.ADDED, _pod("b2", B_IP, "intruder", "uid-b2"))])
    assert agent.pod_for_ifindex(B_IF) == "x/b2" and B_IF in datapath.tables
    # Then, in one batch, it goes and x/b comes back with the address.
    agent.step([_event(EventType.DELETED, _pod("b2", B_IP, "intruder", "uid-b2")),
                _event(EventType.ADDED, _pod("b", B_IP, "b", "uid-b3"))])
    assert agent.pod_for_ifindex(B_IF) == "x/b"
    assert datapath.tables.get(B_IF) == b_table, "x/b's table is not the one in force"
    assert agent.state.pods_by_ip(B_IP) == "x/b"


def test_a_pod_deleted_alone_still_loses_its_entry() -> None:
    datapath = MemoryDatapath()
    agent = _agent(datapath)
    agent.step([_event(EventType.DELETED, _pod("b", B_IP, "b", "uid-b"))])
    assert B_IF not in datapath.tables
    assert agent.pod_for_ifindex(B_IF) is None
