"""Verdicts for connections through a Service: one per backend kube-proxy may choose.

A connection to a frontend is the connection to the chosen backend on its target port
(`evaluate` for a pod backend, `evaluate_ip` for an address outside the cluster). This is what
Calico's iptables mode and OVN-Kubernetes enforce (policy after DNAT) and what users expect:
an egress rule naming pods allows their Services, and nothing allows a Service wholesale.
"""

from __future__ import annotations

from dataclasses import dataclass

from enforcer.model.cluster import ClusterState
from enforcer.model.evaluate import Verdict, evaluate, evaluate_ip
from enforcer.model.objects import EGRESS, IPAddress
from enforcer.model.services import Backend, ServicePort


@dataclass
class BackendVerdict:
    service: str  # namespace/name
    port: ServicePort
    backend: Backend
    verdict: Verdict


def backend_verdict(
    state: ClusterState, src_pod_key: str, backend: Backend, protocol: str, family: int | None
) -> Verdict:
    if backend.pod is not None:
        fam = backend.ip.version if backend.ip is not None else family
        return evaluate(state, src_pod_key, backend.pod, backend.port, protocol, family=fam)
    assert backend.ip is not None
    return evaluate_ip(state, src_pod_key, backend.ip, backend.port, protocol, EGRESS)


def evaluate_service_port(
    state: ClusterState,
    src_pod_key: str,
    service_key: str,
    port: ServicePort,
    family: int | None = None,
) -> list[BackendVerdict]:
    """Each backend of one Service port (of `family`, or all) and its verdict."""
    out = []
    for backend in state.services.backends(state, service_key, port):
        if family is not None and backend.ip is not None and backend.ip.version != family:
            continue
        verdict = backend_verdict(state, src_pod_key, backend, port.protocol, family)
        out.append(BackendVerdict(service_key, port, backend, verdict))
    return out


def evaluate_service(
    state: ClusterState,
    src_pod_key: str,
    service_key: str,
    port: int,
    protocol: str,
    family: int | None = None,
) -> list[BackendVerdict]:
    """`src` connects to Service `service_key` on its port `port`/`protocol`."""
    svc = state.services.services.get(service_key)
    if svc is None:
        raise KeyError(f"unknown Service {service_key!r} (use namespace/name)")
    out = []
    for sp in svc.ports:
        if sp.port == port and sp.protocol == protocol:
            out += evaluate_service_port(state, src_pod_key, service_key, sp, family)
    return out


def evaluate_frontend(
    state: ClusterState, src_pod_key: str, ip: IPAddress | None, port: int, protocol: str
) -> list[BackendVerdict] | None:
    """`src` connects to a frontend address (ip None: a NodePort); None if it is no frontend."""
    ref = state.services.lookup(ip, port, protocol)
    if ref is None:
        return None
    family = ip.version if ip is not None else None
    return evaluate_service_port(state, src_pod_key, ref[0], ref[1], family)
