"""Services and EndpointSlices: what a connection to a ClusterIP, NodePort or external IP
reaches once kube-proxy has chosen a backend.

NetworkPolicy names pods and address blocks, never Services. A connection to a Service is
therefore judged as the connection to the backend kube-proxy picked, on the backend's target
port: the source's egress must allow that backend and port, and the backend's ingress must
allow the source (see `evaluate_service`). A Service's frontends (ClusterIPs, external and
load-balancer IPs, NodePorts) are never peers of their own.

Backends come from the EndpointSlices labelled `kubernetes.io/service-name`, as kube-proxy reads
them; a Service with a selector but no slice yet (manifests analyzed before they are applied)
gets the backends the EndpointSlice controller would give it: the ready endpoint pods of its
namespace that the selector matches, each port's targetPort resolved on the pod (a named
targetPort by name AND protocol; a pod that does not declare it is no backend for that port).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from enforcer.model.objects import FrozenLabels, IPAddress, _freeze

KIND_SERVICE = "Service"
KIND_ENDPOINT_SLICE = "EndpointSlice"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
ADDRESS_TYPES = ("IPv4", "IPv6", "FQDN")


@dataclass(frozen=True)
class ServicePort:
    name: str  # "" when the Service has one unnamed port
    protocol: str
    port: int
    target_port: int | str  # a number, or a container port name resolved on each backend
    node_port: int | None = None


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    uid: str = ""
    type: str = "ClusterIP"
    # Empty: not allocated yet (a manifest), headless, or ExternalName.
    cluster_ips: tuple[IPAddress, ...] = ()
    headless: bool = False  # clusterIP None: DNS only, kube-proxy translates nothing
    # None: no selector, endpoints are managed by hand (EndpointSlices, e.g. external ones).
    selector: Mapping[str, str] | None = None
    ports: tuple[ServicePort, ...] = ()
    external_ips: tuple[IPAddress, ...] = ()
    load_balancer_ips: tuple[IPAddress, ...] = ()
    external_traffic_policy: str = "Cluster"

    def __post_init__(self) -> None:
        if self.selector is not None:
            _freeze(self, "selector")

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def proxied(self) -> bool:
        """Whether kube-proxy translates connections to it (not headless, not ExternalName)."""
        return not self.headless and self.type != "ExternalName"

    def frontend_ips(self) -> tuple[IPAddress, ...]:
        """Addresses kube-proxy answers for this Service (NodePorts aside)."""
        return self.cluster_ips + self.external_ips + self.load_balancer_ips

    def port_named(self, name: str, protocol: str) -> ServicePort | None:
        for p in self.ports:
            if p.name == name and p.protocol == protocol:
                return p
        return None


@dataclass(frozen=True)
class SliceEndpoint:
    addresses: tuple[IPAddress, ...]
    ready: bool = True  # conditions.ready; unset means ready
    node_name: str | None = None
    target_pod: str | None = None  # namespace/name of targetRef when it is a Pod


@dataclass(frozen=True)
class SlicePort:
    name: str  # matches the Service port's name ("" for an unnamed port)
    protocol: str
    port: int | None  # None: the slice does not say (kube-proxy then ignores the port)


@dataclass(frozen=True)
class EndpointSlice:
    namespace: str
    name: str
    uid: str = ""
    labels: Mapping[str, str] = field(default_factory=FrozenLabels)
    address_type: str = "IPv4"
    endpoints: tuple[SliceEndpoint, ...] = ()
    ports: tuple[SlicePort, ...] = ()

    def __post_init__(self) -> None:
        _freeze(self, "labels")

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def service_key(self) -> str | None:
        """The Service this slice belongs to (its kubernetes.io/service-name label)."""
        svc = self.labels.get(SERVICE_NAME_LABEL)
        return f"{self.namespace}/{svc}" if svc else None


ServiceObject = Service | EndpointSlice


@dataclass(frozen=True)
class Backend:
    """Where kube-proxy may send a connection: a pod (pod set), or an address outside the
    cluster (pod None), on the target port. `ip` is None only for planned pods without IPs."""

    pod: str | None
    ip: IPAddress | None
    port: int

    def describe(self) -> str:
        who = self.pod or str(self.ip)
        return f"{who}:{self.port}"


@dataclass(frozen=True)
class Frontend:
    """One address, port and protocol kube-proxy translates (a ClusterIP, external or
    load-balancer IP); NodePorts are keyed by port and protocol alone (any node address)."""

    ip: IPAddress | None  # None: a NodePort
    port: int
    protocol: str
