"""Reachability through Services: may each pod connect to each pod through the pod's Services?

A destination pod is reached through every Service port numbered `port`/`protocol` that has it
as a backend, on that backend's target port. The cell is allowed when every such route is
(kube-proxy may pick any of them); a pod no Service fronts on that port has no column. With
correct Service semantics (policy judged against the chosen backend) each cell equals the pod
matrix on the target port: `analyze --via service` shows exactly that, and the lab's
`probe --via service --check` holds the kernel to it.

JSON: the matrix document of matrix.py plus `"via": "service"` and `"routes"`:
{"x/a": ["x/s-a:80 -> 80"]}, destination pod -> the Service ports and target ports used.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from enforcer.analysis.matrix import Matrix, matrix_document
from enforcer.model.cluster import ClusterState
from enforcer.model.evaluate import PairEvaluator
from enforcer.model.services import Backend, ServicePort

Route = tuple[str, ServicePort, Backend]  # (service key, service port, backend)


def service_routes(
    state: ClusterState, port: int, protocol: str, family: int | None = None
) -> dict[str, list[Route]]:
    """Destination pod -> its routes through Service ports numbered port/protocol."""
    routes: dict[str, list[Route]] = {}
    for key, svc in sorted(state.services.services.items()):
        if not svc.proxied:
            continue  # headless or ExternalName: nothing is translated
        for sp in svc.ports:
            if sp.port != port or sp.protocol != protocol:
                continue
            for backend in state.services.backends(state, key, sp):
                if backend.pod is None:
                    continue  # outside the cluster: no column (see evaluate_service)
                if family is not None and backend.ip is not None and backend.ip.version != family:
                    continue
                route = (key, sp, backend)
                if route not in routes.setdefault(backend.pod, []):
                    routes[backend.pod].append(route)
    return routes


def service_reachability(
    state: ClusterState,
    port: int,
    protocol: str,
    family: int | None = None,
    sources: Iterable[str] | None = None,
    routes: dict[str, list[Route]] | None = None,
) -> Matrix:
    routes = routes if routes is not None else service_routes(state, port, protocol, family)
    rows = sorted(sources) if sources is not None else state.endpoint_keys()
    pairs = PairEvaluator(state, family)
    return {
        src: {
            dst: all(pairs.verdict(src, dst, b.port, protocol).allowed for _, _, b in via)
            for dst, via in sorted(routes.items())
        }
        for src in rows
    }


def describe_route(route: Route) -> str:
    key, sp, backend = route
    return f"{key}:{sp.port} -> {backend.port}"


def service_document(
    state: ClusterState, port: int, protocol: str, family: int | None = None
) -> dict[str, Any]:
    routes = service_routes(state, port, protocol, family)
    doc = matrix_document(
        port, protocol, service_reachability(state, port, protocol, family, routes=routes)
    )
    doc["via"] = "service"
    doc["routes"] = {dst: [describe_route(r) for r in via] for dst, via in sorted(routes.items())}
    return doc


def declared_service_ports(
    state: ClusterState, protocol: str | None = None
) -> list[tuple[int, str]]:
    found = {
        (sp.port, sp.protocol)
        for svc in state.services.services.values()
        for sp in svc.ports
        if protocol is None or sp.protocol == protocol
    }
    return sorted(found)
