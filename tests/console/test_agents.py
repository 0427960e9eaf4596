"""Finding the agents: the DaemonSet's running pods, with the console's token."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace as NS
from typing import Any

from kubernetes import client

from enforcer.agentclient import AgentEndpoint
from enforcer.console.agents import agents_of_pods, bearer_token


def _pod(node: str | None, ip: str | None, phase: str = "Running", created: int = 0,
         deleting: bool = False) -> Any:
    return NS(
        spec=NS(node_name=node),
        status=NS(pod_ip=ip, phase=phase),
        metadata=NS(creation_timestamp=datetime(2026, 1, 1, 0, created, tzinfo=UTC),
                    deletion_timestamp=datetime(2026, 1, 1, tzinfo=UTC) if deleting else None),
    )


def test_running_pods_with_an_address_are_their_nodes_agents() -> None:
    pods = [
        _pod("node1", "10.0.0.1"),
        _pod("node2", "fd00::2"),
        _pod("node3", None, phase="Pending"),
        _pod("node4", "10.0.0.4", phase="Failed"),
        _pod("node5", "10.0.0.5", deleting=True),
        _pod("node1", "10.0.0.9", created=5),  # a rolling update's new pod wins
    ]
    assert agents_of_pods(pods, "tok") == {
        "node1": AgentEndpoint("node1", "10.0.0.9:9830", token="tok"),
        "node2": AgentEndpoint("node2", "[fd00::2]:9830", token="tok"),
    }


def test_the_token_is_the_clients_own() -> None:
    cfg = client.Configuration()
    cfg.api_key["BearerToken"] = "bearer abc.def"  # as the in-cluster loader stores it
    assert bearer_token(cfg) == "abc.def"
    cfg.api_key["BearerToken"] = "Bearer xyz"  # as a kubeconfig's token
    assert bearer_token(cfg) == "xyz"
    assert bearer_token(client.Configuration()) is None
