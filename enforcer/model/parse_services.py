"""Parse and validate Services (v1) and EndpointSlices (discovery.k8s.io/v1).

Same contract as `parse.parse_object`: defaulting as the API server does it (protocol TCP,
targetPort = port, type ClusterIP, externalTrafficPolicy Cluster), and an invalid object raises
ValidationError naming origin, object and field, with nothing of it kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import ip_address
from typing import Any

from enforcer.model.objects import IPAddress
from enforcer.model.parse import (
    _DNS_LABEL,
    CORE_API,
    ValidationError,
    _Ctx,
    _labels,
    _metadata,
    _port_name,
    _port_number,
    _protocol,
)
from enforcer.model.services import (
    ADDRESS_TYPES,
    KIND_ENDPOINT_SLICE,
    KIND_SERVICE,
    SERVICE_TYPES,
    EndpointSlice,
    Service,
    ServiceObject,
    ServicePort,
    SliceEndpoint,
    SlicePort,
)

DISCOVERY_API = "discovery.k8s.io/v1"


def parse_service_object(obj: Mapping[str, Any], origin: str = "<input>") -> ServiceObject | None:
    """A Service or EndpointSlice; None for other kinds. Raises ValidationError."""
    if not isinstance(obj, Mapping):
        raise ValidationError(origin, "", None, None, "", "not an object")
    kind, api = obj.get("kind"), obj.get("apiVersion")
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
    name = meta.get("name") if isinstance(meta.get("name"), str) else None
    namespace = meta.get("namespace") if isinstance(meta.get("namespace"), str) else None
    if kind == KIND_SERVICE and api == CORE_API:
        return _parse_service(_Ctx(origin, KIND_SERVICE, namespace or "default", name), obj)
    if kind == KIND_ENDPOINT_SLICE and api == DISCOVERY_API:
        return _parse_slice(_Ctx(origin, KIND_ENDPOINT_SLICE, namespace or "default", name), obj)
    return None


def _ip(ctx: _Ctx, raw: Any, field: str) -> IPAddress:
    try:
        return ip_address(ctx.string(raw, field))
    except ValueError:
        ctx.fail(field, f"invalid IP address {raw!r}")


def _ips(ctx: _Ctx, raw: Any, field: str) -> tuple[IPAddress, ...]:
    return tuple(_ip(ctx, item, f"{field}[{i}]") for i, item in enumerate(ctx.seq(raw, field)))


def _target_port(ctx: _Ctx, raw: Any, port: int, field: str) -> int | str:
    if raw is None or raw == 0:
        return port  # defaulted to the port, as the API server does
    if isinstance(raw, str):
        if raw.isdigit():
            return _port_number(ctx, int(raw), field)  # intstr "8080" reads as a number here
        return _port_name(ctx, raw, field)
    return _port_number(ctx, raw, field)


def _cluster_ips(ctx: _Ctx, spec: Mapping[str, Any]) -> tuple[IPAddress, ...]:
    first = spec.get("clusterIP")
    many = list(ctx.seq(spec.get("clusterIPs"), "spec.clusterIPs"))
    if many and first not in (None, "", many[0]):
        ctx.fail("spec.clusterIPs[0]", f"must equal spec.clusterIP ({first})")
    raw = many or ([first] if first not in (None, "") else [])
    if raw and raw[0] == "None":
        if len(raw) > 1:
            ctx.fail("spec.clusterIPs", "a headless Service has exactly one clusterIP: None")
        return ()
    ips = tuple(_ip(ctx, item, f"spec.clusterIPs[{i}]") for i, item in enumerate(raw))
    if len(ips) > 2 or len({ip.version for ip in ips}) != len(ips):
        ctx.fail("spec.clusterIPs", "at most one address per IP family")
    return ips


def _parse_service(ctx: _Ctx, obj: Mapping[str, Any]) -> Service:
    name, namespace, uid, _ = _metadata(ctx, obj, namespaced=True)
    ctx.namespace, ctx.name = namespace, name
    if not _DNS_LABEL.match(name) or len(name) > 63:
        ctx.fail("metadata.name", f"invalid Service name {name!r}: not a DNS label")
    spec = ctx.mapping(obj.get("spec"), "spec")
    status = ctx.mapping(obj.get("status"), "status")
    svc_type = spec.get("type") or "ClusterIP"
    if svc_type not in SERVICE_TYPES:
        ctx.fail("spec.type", f"unsupported value {svc_type!r}: use {', '.join(SERVICE_TYPES)}")
    ports: list[ServicePort] = []
    raw_ports = ctx.seq(spec.get("ports"), "spec.ports")
    cluster_ips = () if svc_type == "ExternalName" else _cluster_ips(ctx, spec)
    headless = spec.get("clusterIP") == "None" or (spec.get("clusterIPs") or [None])[0] == "None"
    if not raw_ports and svc_type != "ExternalName" and not headless:
        ctx.fail("spec.ports", "required value: every Service but a headless one needs ports")
    seen_names: set[str] = set()
    seen_ports: set[tuple[int, str]] = set()
    for i, item in enumerate(raw_ports):
        where = f"spec.ports[{i}]"
        p = ctx.mapping(item, where)
        pname = p.get("name") or ""
        if pname:
            pname = _port_name(ctx, ctx.string(pname, f"{where}.name"), f"{where}.name")
        elif len(raw_ports) > 1:
            ctx.fail(f"{where}.name", "required value: with several ports, each needs a name")
        if pname in seen_names:
            ctx.fail(f"{where}.name", f"duplicate port name {pname!r}")
        seen_names.add(pname)
        number = _port_number(ctx, p.get("port"), f"{where}.port")
        protocol = _protocol(ctx, p.get("protocol"), f"{where}.protocol")
        if (number, protocol) in seen_ports:
            ctx.fail(f"{where}.port", f"duplicate port {number}/{protocol}")
        seen_ports.add((number, protocol))
        node_port = p.get("nodePort")
        if node_port is not None:
            if svc_type not in ("NodePort", "LoadBalancer"):
                ctx.fail(f"{where}.nodePort", f"may not be used when type is {svc_type!r}")
            node_port = _port_number(ctx, node_port, f"{where}.nodePort")
        target = _target_port(ctx, p.get("targetPort"), number, f"{where}.targetPort")
        ports.append(ServicePort(pname, protocol, number, target, node_port))
    raw_selector = spec.get("selector")
    selector = _labels(ctx, raw_selector, "spec.selector") if raw_selector else None
    policy = spec.get("externalTrafficPolicy") or "Cluster"
    if policy not in ("Cluster", "Local"):
        ctx.fail("spec.externalTrafficPolicy", f"unsupported value {policy!r}: Cluster or Local")
    lb = ctx.mapping(status.get("loadBalancer"), "status.loadBalancer")
    lb_ips = tuple(
        _ip(ctx, ing.get("ip"), f"status.loadBalancer.ingress[{i}].ip")
        for i, ing in enumerate(ctx.seq(lb.get("ingress"), "status.loadBalancer.ingress"))
        if isinstance(ing, Mapping) and ing.get("ip")
    )
    return Service(
        namespace=namespace,
        name=name,
        uid=uid,
        type=str(svc_type),
        cluster_ips=cluster_ips,
        headless=headless,
        selector=selector,
        ports=tuple(ports),
        external_ips=_ips(ctx, spec.get("externalIPs"), "spec.externalIPs"),
        load_balancer_ips=lb_ips if svc_type == "LoadBalancer" else (),
        external_traffic_policy=str(policy),
    )


def _parse_slice(ctx: _Ctx, obj: Mapping[str, Any]) -> EndpointSlice:
    name, namespace, uid, labels = _metadata(ctx, obj, namespaced=True)
    ctx.namespace, ctx.name = namespace, name
    address_type = obj.get("addressType")
    if address_type not in ADDRESS_TYPES:
        ctx.fail("addressType", f"unsupported value {address_type!r}: use IPv4, IPv6 or FQDN")
    endpoints = []
    for i, item in enumerate(ctx.seq(obj.get("endpoints"), "endpoints")):
        where = f"endpoints[{i}]"
        ep = ctx.mapping(item, where)
        raw_addrs = ctx.seq(ep.get("addresses"), f"{where}.addresses")
        if not raw_addrs:
            ctx.fail(f"{where}.addresses", "required value: at least one address")
        addrs: tuple[IPAddress, ...] = ()
        if address_type != "FQDN":  # FQDN endpoints are not followed by kube-proxy
            want = 4 if address_type == "IPv4" else 6
            addrs = _ips(ctx, raw_addrs, f"{where}.addresses")
            for j, addr in enumerate(addrs):
                if addr.version != want:
                    ctx.fail(f"{where}.addresses[{j}]", f"{addr} is not an {address_type} address")
        conditions = ctx.mapping(ep.get("conditions"), f"{where}.conditions")
        ref = ctx.mapping(ep.get("targetRef"), f"{where}.targetRef")
        target_pod = None
        if ref.get("kind") == "Pod" and ref.get("name"):
            target_pod = f"{ref.get('namespace') or namespace}/{ref['name']}"
        node = ep.get("nodeName")
        endpoints.append(
            SliceEndpoint(
                addresses=addrs,
                ready=conditions.get("ready") is not False,
                node_name=str(node) if node else None,
                target_pod=target_pod,
            )
        )
    ports = []
    for i, item in enumerate(ctx.seq(obj.get("ports"), "ports")):
        where = f"ports[{i}]"
        p = ctx.mapping(item, where)
        pname = p.get("name") or ""
        if pname:
            pname = _port_name(ctx, ctx.string(pname, f"{where}.name"), f"{where}.name")
        number = p.get("port")
        if number is not None:
            number = _port_number(ctx, number, f"{where}.port")
        protocol = _protocol(ctx, p.get("protocol"), f"{where}.protocol")
        ports.append(SlicePort(pname, protocol, number))
    return EndpointSlice(
        namespace=namespace,
        name=name,
        uid=uid,
        labels=labels,
        address_type=str(address_type),
        endpoints=tuple(endpoints),
        ports=tuple(ports),
    )
