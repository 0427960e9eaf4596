"""What the agent writes into the Service maps (bpf/lib/services.h), from the cluster state
and the local endpoints: every frontend kube-proxy translates (ClusterIPs, external and
load-balancer IPs), each local endpoint's addresses, and for each local endpoint the
frontends it backs itself (hairpins).

A frontend with a backend on one of this node's own addresses (a hostNetwork endpoint here)
is not deferred either: kube-proxy delivers such a flow to the node itself, past every
post-DNAT hook, so it is judged at the source against the frontend (fail closed).

NodePorts are not deferred: kube-proxy masquerades what it sends through a NodePort, so after
the DNAT the source pod can no longer be recognised. A pod connecting to a NodePort is judged
at its own hook on the node address and port it names (fail closed).

Frontends whose flows a NAT masquerades after the DNAT are marked (`masqueraded`), so the
source hook notes each new flow's fingerprint and the post-DNAT hooks find the source pod by
it: a backend outside the cluster (the CNI masquerades it on the way out), and an external or
load-balancer IP of a Service with externalTrafficPolicy Cluster (kube-proxy masquerades
those, in both its iptables and nftables modes: otherwise the backend's hook would see the
node's address and judge no pod's egress at all).

Recomputed whole after a batch of events that may change it (may_change_maps) or changed a
local endpoint; the writer only writes the difference.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Container, Iterable, Mapping
from ipaddress import ip_address
from typing import Protocol

from pyroute2 import IPRoute

from enforcer.datapath.services import Frontend, ServiceMaps
from enforcer.datapath.types import IPAddress
from enforcer.model.cluster import ClusterState
from enforcer.model.clusterpolicy import ClusterPolicy
from enforcer.model.nodes import Node
from enforcer.model.objects import Namespace, NetworkPolicy, Pod

# Interfaces where a local pod's traffic leaves the node after DNAT: uplinks, bonds, tunnels
# of common CNIs (flannel, Calico's IPIP/VXLAN, Cilium's, WireGuard), and the lab's uplink.
DEFAULT_NODE_INTERFACE_PATTERN = (
    r"^(eth|ens|enp|eno|bond|vxlan|flannel|tunl|cilium_vxlan|cilium_geneve|genev_sys|wg|uplink)"
)


class LocalEndpoint(Protocol):
    pod: str
    ifindex: int | None
    endpoint_id: int
    generation: int


def desired_maps(
    state: ClusterState,
    endpoints: Iterable[LocalEndpoint],
    node_addresses: Collection[IPAddress] = frozenset(),
) -> ServiceMaps:
    out = ServiceMaps()
    for fe, (key, sp) in state.services.frontends().items():
        if fe.ip is None:
            continue
        backends = state.services.backends(state, key, sp)
        if any(b.ip in node_addresses for b in backends):
            continue  # delivered to this node itself: no hook after the DNAT sees it
        out.frontends.add((fe.ip, fe.port, fe.protocol))
    local: dict[str, int] = {}  # pod key -> endpoint id
    for ep in endpoints:
        pod = state.pods.get(ep.pod)
        if ep.ifindex is None or not ep.generation or pod is None:
            continue
        local[ep.pod] = ep.endpoint_id
        for ip in pod.ips:
            out.local_endpoints[ip] = (ep.endpoint_id, ep.ifindex)
    for key, svc in state.services.services.items():
        if not svc.proxied:
            continue
        for sp in svc.ports:
            fes: list[Frontend] = [
                fe
                for fe in ((ip, sp.port, sp.protocol) for ip in svc.frontend_ips())
                if fe in out.frontends
            ]
            backends = state.services.backends(state, key, sp)
            if any(b.pod is None for b in backends):
                out.masqueraded.update(fes)
            if svc.external_traffic_policy == "Cluster":
                external = {*svc.external_ips, *svc.load_balancer_ips}
                out.masqueraded.update(fe for fe in fes if fe[0] in external)
            for backend in backends:
                eid = local.get(backend.pod or "")
                if eid is None:
                    continue
                for fe in fes:
                    out.self_backends[(fe, eid)] = backend.port
    return out


def may_change_maps(
    state: ClusterState,
    old: object,
    new: object,
    local_pods: Container[str],
    node_addresses: Collection[IPAddress],
) -> bool:
    """Whether replacing object `old` by `new` (either None) in `state` can change what
    desired_maps returns, exactly (never False when it can): Services and slices always; a
    local pod (its addresses, the selector backends it joins or leaves); any other pod only
    through its addresses, when a slice lists one (the address's owner decides whether that
    backend is a pod) or one is a node address (a frontend with a backend here is not
    deferred). Namespaces, policies (cluster-scoped ones too) and Node objects never: no
    Service reads them."""
    objs = [o for o in (old, new) if o is not None]
    if all(isinstance(o, Namespace | NetworkPolicy | ClusterPolicy | Node) for o in objs):
        return False
    pods = [o for o in objs if isinstance(o, Pod)]
    if len(pods) != len(objs):
        return True  # Services, slices, and any kind this check does not know
    if pods[0].key in local_pods:
        return True
    services = state.services
    return any(ip in node_addresses or services.lists_address(ip) for p in pods for ip in p.ips)


def node_interfaces(pattern: str) -> Mapping[int, str]:
    """ifindex -> name of this namespace's links matching `pattern`."""
    regex = re.compile(pattern)
    with IPRoute() as ipr:
        links = {m["index"]: m.get_attr("IFLA_IFNAME") for m in ipr.get_links()}
    return {i: n for i, n in links.items() if n and regex.match(n)}


def local_addresses() -> set[IPAddress]:
    """This namespace's own addresses: where kube-proxy delivers to the node itself."""
    with IPRoute() as ipr:
        return {ip_address(a.get_attr("IFA_ADDRESS")) for a in ipr.get_addr()}
