"""Where the agents are: `--agents k8s` (the DaemonSet's pods) or `--agents lab:NAME`.

Each returns a callable the collector calls again and again (agents come and go), answering
node name -> AgentEndpoint.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from enforcer.agentclient import AgentEndpoint

AGENT_PORT = 9830  # the agent runs in the host network: its pod IP:9830 is its node's API
DEFAULT_NAMESPACE = "enforcer-system"
DEFAULT_SELECTOR = "app.kubernetes.io/name=enforcer,app.kubernetes.io/component=agent"

ListAgents = Callable[[], dict[str, AgentEndpoint]]


def lab_agents(name: str) -> ListAgents:
    """The agents of lab `name`, re-read from its state each time (a node's agent may have
    been restarted)."""
    from enforcer.lab import lab

    def list_agents() -> dict[str, AgentEndpoint]:
        return lab.agent_endpoints(lab.LabState.load(name))

    return list_agents


def kubernetes_agents(
    namespace: str, selector: str, kubeconfig: str | None = None
) -> ListAgents:
    """The DaemonSet's running pods, each called with the console's own service-account token
    (read again at every listing: projected tokens rotate)."""
    from kubernetes import client

    from enforcer.sources.kubernetes import api_client

    api, _ = api_client(kubeconfig)
    core = client.CoreV1Api(api)

    def list_agents() -> dict[str, AgentEndpoint]:
        token = bearer_token(api.configuration)
        pods = core.list_namespaced_pod(namespace, label_selector=selector, _request_timeout=10)
        return agents_of_pods(pods.items, token)

    return list_agents


def agents_of_pods(pods: list[Any], token: str | None) -> dict[str, AgentEndpoint]:
    """node name -> endpoint, for the pods that run and have an address (kubernetes client
    V1Pod objects); a node with two agent pods (a rolling update) keeps the newer."""
    found: dict[str, tuple[Any, AgentEndpoint]] = {}
    for pod in pods:
        node, ip = pod.spec.node_name, pod.status.pod_ip
        if not node or not ip or pod.status.phase != "Running" or pod.metadata.deletion_timestamp:
            continue
        host = f"[{ip}]" if ipaddress.ip_address(ip).version == 6 else ip
        endpoint = AgentEndpoint(node, f"{host}:{AGENT_PORT}", token=token)
        created = pod.metadata.creation_timestamp
        if node not in found or (created and created > found[node][0]):
            found[node] = (created, endpoint)
    return {node: endpoint for node, (_, endpoint) in found.items()}


def bearer_token(configuration: Any) -> str | None:
    """The token a kubernetes client configuration authenticates with: in a pod, the
    service account's (the client's hook re-reads its file once a minute)."""
    refresh = getattr(configuration, "refresh_api_key_hook", None)
    if refresh is not None:
        refresh(configuration)
    value = str((configuration.api_key or {}).get("BearerToken") or "").strip()
    scheme, _, token = value.partition(" ")
    # The client stores "bearer TOKEN" (in-cluster) or "Bearer TOKEN" (kubeconfig).
    return (token.strip() if scheme.lower() == "bearer" else value) or None
