"""The lab's Services: what the API server, the EndpointSlice controller, kube-proxy and
CoreDNS do for them on a real cluster.

- ClusterIPs come from 198.19.128.0/20 and 2001:2:0:ff00::/112 (benchmarking ranges, like the
  pods'), NodePorts from 30000 up; a manifest's own clusterIP or nodePort is kept.
- `--services per-pod` gives every pod a Service of its own (as the upstream e2e suite does)
  named s-POD, exposing every port the lab serves with targetPort = port.
- Services with a selector (or a per-pod one) get EndpointSlices written by the lab, as the
  controller would; Services without one keep the slices the manifests give.
- kube-proxy's iptables rules go into every node namespace (kubeproxy.py).
- `--dns` adds a DNS pod (kube-system/lab-dns, k8s-app=kube-dns) and its Service kube-dns at
  198.19.128.10, answering NAME.NAMESPACE.svc.cluster.local.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from pathlib import Path
from typing import Any

from enforcer.lab import dns
from enforcer.model.cluster import ClusterState
from enforcer.model.services import SERVICE_NAME_LABEL, ServicePort

SERVICE_V4 = IPv4Network("198.19.128.0/20")
SERVICE_V6 = IPv6Network("2001:2:0:ff00::/112")
DNS_V4 = SERVICE_V4[10]
DNS_V6 = SERVICE_V6[10]
NODE_PORT_FIRST = 30000
PER_POD_ANNOTATION = "lab.enforcer.dev/pod"  # a per-pod Service's one backend pod
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "lab.enforcer.dev"
DNS_NAMESPACE = "kube-system"
DNS_POD = "lab-dns"
DNS_SERVICE = "kube-dns"

RawObject = dict[str, Any]


def per_pod_name(pod_name: str) -> str:
    return f"s-{pod_name}"[:63].rstrip("-")


def port_name(port: int, protocol: str) -> str:
    return f"p{port}-{protocol.lower()}"


def per_pod_service(namespace: str, pod_name: str, ports: Sequence[tuple[int, str]]) -> RawObject:
    """A selector-less Service whose one backend is the pod (the lab writes its slice)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "namespace": namespace,
            "name": per_pod_name(pod_name),
            "annotations": {PER_POD_ANNOTATION: pod_name},
        },
        "spec": {
            "ports": [
                {"name": port_name(p, proto), "port": p, "targetPort": p, "protocol": proto}
                for p, proto in ports
            ]
        },
    }


def dns_objects() -> list[RawObject]:
    ports = [
        {"name": "dns", "containerPort": 53, "protocol": "UDP"},
        {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
    ]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "namespace": DNS_NAMESPACE,
            "name": DNS_POD,
            "labels": {"k8s-app": "kube-dns"},
        },
        "spec": {"containers": [{"name": "dns", "image": "lab-dns", "ports": ports}]},
    }
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"namespace": DNS_NAMESPACE, "name": DNS_SERVICE},
        "spec": {
            "clusterIP": str(DNS_V4),
            "selector": {"k8s-app": "kube-dns"},
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            ],
        },
    }
    return [pod, svc]


# --- the API server's part: addresses and node ports -----------------------------------------


def allocate(services: list[RawObject], ipv6: bool) -> list[RawObject]:
    """Services with clusterIP(s) and nodePorts filled in (given ones kept), as stored."""
    used_ips = {ip for s in services for ip in _given_ips(s)}
    used_ports = {
        p.get("nodePort") for s in services for p in (s.get("spec") or {}).get("ports") or []
    }
    next_v4 = iter(h for h in SERVICE_V4.hosts() if h != DNS_V4 and h not in used_ips)
    next_v6 = iter(h for h in SERVICE_V6.hosts() if h != DNS_V6 and h not in used_ips)
    next_port = iter(p for p in range(NODE_PORT_FIRST, 32768) if p not in used_ports)
    out = []
    for raw in services:
        svc = copy.deepcopy(raw)
        spec = svc.setdefault("spec", {})
        svc_type = spec.get("type") or "ClusterIP"
        if svc_type != "ExternalName" and spec.get("clusterIP") != "None":
            ips = _given_ips(svc)
            if not ips:
                ips = [next(next_v4)] + ([next(next_v6)] if ipv6 else [])
            spec["clusterIP"] = str(ips[0])
            spec["clusterIPs"] = [str(ip) for ip in ips]
        if svc_type in ("NodePort", "LoadBalancer"):
            for port in spec.get("ports") or []:
                port.setdefault("nodePort", next(next_port))
        out.append(svc)
    return out


def _given_ips(svc: Mapping[str, Any]) -> list[IPv4Address | IPv6Address]:
    spec = svc.get("spec") or {}
    raw = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return [ip_address(r) for r in raw if r != "None"]


# --- the EndpointSlice controller's part -----------------------------------------------------


def endpoint_slices(
    cluster: ClusterState, per_pod: Mapping[str, str], nodes: Mapping[str, str]
) -> list[RawObject]:
    """Slices for every Service with a selector, or per-pod (`per_pod`: service key -> pod
    name). `cluster` holds the pods and Services, without lab-made slices; `nodes` maps pod
    key -> node name."""
    out: list[RawObject] = []
    for key, svc in sorted(cluster.services.services.items()):
        one_pod = per_pod.get(key)
        if svc.selector is None and one_pod is None:
            continue  # its slices come from the manifests
        for family in (4, 6):
            groups: dict[tuple[tuple[ServicePort, int], ...], list[tuple[str, Any]]] = {}
            if one_pod is not None:
                pod_key = f"{svc.namespace}/{one_pod}"
                pod = cluster.pods.get(pod_key)
                if pod is None:
                    continue
                mapping = tuple((sp, int(sp.target_port)) for sp in svc.ports)
                for ip in pod.ips_of_family(family):
                    groups.setdefault(mapping, []).append((pod_key, ip))
            else:
                by_pod: dict[tuple[str, Any], list[tuple[ServicePort, int]]] = {}
                for sp in svc.ports:
                    for b in cluster.services.backends(cluster, key, sp):
                        if b.pod is not None and b.ip is not None and b.ip.version == family:
                            by_pod.setdefault((b.pod, b.ip), []).append((sp, b.port))
                for member, ports in by_pod.items():
                    groups.setdefault(tuple(ports), []).append(member)
            for i, (mapping, members) in enumerate(sorted(groups.items(), key=str)):
                out.append(_slice(svc.namespace, svc.name, family, i, mapping, members, nodes))
    return out


def _slice(
    namespace: str,
    service: str,
    family: int,
    index: int,
    mapping: tuple[tuple[ServicePort, int], ...],
    members: list[tuple[str, Any]],
    nodes: Mapping[str, str],
) -> RawObject:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "namespace": namespace,
            "name": f"{service}-lab{family}-{index}"[:253],
            "labels": {SERVICE_NAME_LABEL: service, MANAGED_BY_LABEL: MANAGED_BY},
        },
        "addressType": f"IPv{family}",
        "endpoints": [
            {
                "addresses": [str(ip)],
                "conditions": {"ready": True},
                "nodeName": nodes.get(pod_key),
                "targetRef": {
                    "kind": "Pod",
                    "namespace": pod_key.split("/")[0],
                    "name": pod_key.split("/")[1],
                },
            }
            for pod_key, ip in sorted(members, key=str)
        ],
        "ports": [
            {"name": sp.name, "protocol": sp.protocol, "port": target} for sp, target in mapping
        ],
    }


def is_lab_slice(obj: Mapping[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return obj.get("kind") == "EndpointSlice" and labels.get(MANAGED_BY_LABEL) == MANAGED_BY


# --- CoreDNS's part ----------------------------------------------------------------------------


def dns_records(cluster: ClusterState) -> dns.Records:
    records: dns.Records = {}
    for svc in cluster.services.services.values():
        if svc.type == "ExternalName":
            continue
        entry: dict[str, list[str]] = {"A": [], "AAAA": []}
        if svc.headless:
            ips = [
                ip
                for sp in svc.ports[:1]
                for b in cluster.services.backends(cluster, svc.key, sp)
                if b.ip is not None
                for ip in [b.ip]
            ]
        else:
            ips = list(svc.cluster_ips)
        for ip in ips:
            entry["A" if ip.version == 4 else "AAAA"].append(str(ip))
        records[dns.service_name(svc.namespace, svc.name)] = entry
    return records


def records_path(lab_dir: Path) -> Path:
    return lab_dir / "dns.json"
