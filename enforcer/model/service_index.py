"""Services and EndpointSlices of a ClusterState, indexed the way kube-proxy uses them:
frontend (ClusterIP / external IP : port / protocol, or NodePort) -> Service port -> backends.

Backends are resolved on demand from the current pods and slices, so a pod or slice change
needs no index maintenance beyond the slices-by-service map.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from enforcer.model.objects import IPAddress
from enforcer.model.services import (
    Backend,
    EndpointSlice,
    Frontend,
    Service,
    ServicePort,
)

if TYPE_CHECKING:
    from enforcer.model.cluster import ClusterState

ServicePortRef = tuple[str, ServicePort]  # (service key, port)


class ServiceIndex:
    def __init__(self) -> None:
        self._services: dict[str, Service] = {}
        self._slices: dict[str, EndpointSlice] = {}
        self._slices_by_service: dict[str, set[str]] = {}
        self._frontends: dict[Frontend, ServicePortRef] = {}
        self._slice_addresses: dict[IPAddress, int] = {}  # address -> slices listing it

    # --- read access ---------------------------------------------------------------------

    @property
    def services(self) -> Mapping[str, Service]:
        return MappingProxyType(self._services)

    @property
    def slices(self) -> Mapping[str, EndpointSlice]:
        return MappingProxyType(self._slices)

    def frontends(self) -> Mapping[Frontend, ServicePortRef]:
        return MappingProxyType(self._frontends)

    def lists_address(self, ip: IPAddress) -> bool:
        """Whether some EndpointSlice lists `ip` (ready or not)."""
        return ip in self._slice_addresses

    def lookup(self, ip: IPAddress | None, port: int, protocol: str) -> ServicePortRef | None:
        """The Service port a frontend address belongs to (ip None: a NodePort)."""
        return self._frontends.get(Frontend(ip, port, protocol))

    # --- updates -------------------------------------------------------------------------

    def upsert(self, obj: Service | EndpointSlice) -> None:
        if isinstance(obj, Service):
            self.remove_service(obj.key)
            self._services[obj.key] = obj
            for fe, ref in _frontends_of(obj):
                # The first Service keeps a contested frontend (the API server never allows
                # two to share one; a hand-written folder might).
                self._frontends.setdefault(fe, ref)
        else:
            self.remove_slice(obj.key)
            self._slices[obj.key] = obj
            for addr in _addresses_of(obj):
                self._slice_addresses[addr] = self._slice_addresses.get(addr, 0) + 1
            svc = obj.service_key
            if svc is not None:
                self._slices_by_service.setdefault(svc, set()).add(obj.key)

    def remove_service(self, key: str) -> None:
        old = self._services.pop(key, None)
        if old is None:
            return
        for fe, ref in _frontends_of(old):
            if self._frontends.get(fe) == ref:
                del self._frontends[fe]
        # Another Service may have claimed one of the freed frontends.
        for svc in self._services.values():
            for fe, ref in _frontends_of(svc):
                self._frontends.setdefault(fe, ref)

    def remove_slice(self, key: str) -> None:
        old = self._slices.pop(key, None)
        if old is None:
            return
        for addr in _addresses_of(old):
            left = self._slice_addresses.pop(addr) - 1
            if left:
                self._slice_addresses[addr] = left
        svc = old.service_key
        if svc is not None:
            keys = self._slices_by_service.get(svc, set())
            keys.discard(key)
            if not keys:
                self._slices_by_service.pop(svc, None)

    # --- backends ------------------------------------------------------------------------

    def backends(self, state: ClusterState, service_key: str, port: ServicePort) -> list[Backend]:
        """Where kube-proxy sends a connection to `port` of the Service, sorted."""
        svc = self._services.get(service_key)
        if svc is None:
            return []
        slice_keys = self._slices_by_service.get(service_key)
        if slice_keys:
            found = self._from_slices(state, svc, port, slice_keys)
        elif svc.selector is not None:
            found = self._from_selector(state, svc, port)
        else:
            found = set()
        return sorted(found, key=lambda b: (b.pod or "", str(b.ip), b.port))

    def _from_slices(
        self, state: ClusterState, svc: Service, port: ServicePort, slice_keys: set[str]
    ) -> set[Backend]:
        found: set[Backend] = set()
        for key in slice_keys:
            es = self._slices[key]
            target = next(
                (p.port for p in es.ports if p.name == port.name and p.protocol == port.protocol),
                None,
            )
            if target is None:
                continue  # the slice does not serve this port
            for ep in es.endpoints:
                if not ep.ready:
                    continue
                for addr in ep.addresses:
                    owner = state.pods_by_ip(addr)
                    found.add(Backend(owner, addr, target))
        return found

    def _from_selector(self, state: ClusterState, svc: Service, port: ServicePort) -> set[Backend]:
        """What the EndpointSlice controller would publish for a selector."""
        assert svc.selector is not None
        families = {ip.version for ip in svc.cluster_ips} or {4, 6}
        found: set[Backend] = set()
        for key in state.endpoint_keys():
            pod = state.pods[key]
            if pod.namespace != svc.namespace:
                continue
            if any(pod.labels.get(k) != v for k, v in svc.selector.items()):
                continue
            if isinstance(port.target_port, str):
                numbers = pod.resolve_named_port(port.target_port, port.protocol)
                if not numbers:
                    continue  # a pod that does not declare the name is no backend of the port
                target = numbers[0]
            else:
                target = port.target_port
            ips = [ip for ip in pod.ips if ip.version in families]
            if not pod.ips:
                found.add(Backend(key, None, target))  # planned pod (analysis of manifests)
            for ip in ips:
                found.add(Backend(key, ip, target))
        return found


def _frontends_of(svc: Service) -> list[tuple[Frontend, ServicePortRef]]:
    out = []
    for port in svc.ports:
        ref = (svc.key, port)
        for ip in svc.frontend_ips():
            out.append((Frontend(ip, port.port, port.protocol), ref))
        if port.node_port is not None:
            out.append((Frontend(None, port.node_port, port.protocol), ref))
    return out


def _addresses_of(es: EndpointSlice) -> set[IPAddress]:
    return {addr for ep in es.endpoints for addr in ep.addresses}
