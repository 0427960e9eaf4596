"""The agent's side of flow attribution: names for the kernel's addresses, endpoint ids and
rule set ids (the FlowContext enforcer.flows.attribute asks). Called from the ring-buffer
thread: it only reads what the loop writes (dict lookups, a copied list)."""

from __future__ import annotations

from ipaddress import ip_address
from typing import TYPE_CHECKING

from enforcer.datapath.types import EndpointPolicy, RuleOrigin
from enforcer.model.objects import Pod

if TYPE_CHECKING:
    from enforcer.agent.runtime import Agent
    from enforcer.datapath import Datapath


class AgentFlowContext:
    def __init__(self, agent: Agent, datapath: Datapath) -> None:
        self.node = agent.node_name or ""
        self._agent = agent
        self._datapath = datapath

    def pod_at(self, address: str) -> Pod | None:
        try:
            key = self._agent.state.pods_by_ip(ip_address(address))
        except ValueError:
            return None
        return self._agent.state.pods.get(key) if key else None

    def endpoint(self, endpoint_id: int) -> tuple[Pod, EndpointPolicy] | None:
        for record in list(self._agent.endpoints.values()):
            if record.endpoint_id == endpoint_id and record.policy is not None:
                pod = self._agent.state.pods.get(record.pod)
                return (pod, record.policy) if pod is not None else None
        return None

    def rule_set(self, ident: int) -> frozenset[RuleOrigin] | None:
        return self._datapath.rule_set(ident)

    def service_frontend(self, address: str, port: int, protocol: str) -> bool:
        try:
            return (ip_address(address), port, protocol) in self._datapath.service_frontends
        except ValueError:
            return False
