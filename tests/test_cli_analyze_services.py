"""`enforcer analyze --via service`: the matrix through Services, judged per backend on its
target port; with a Service per pod it equals the pod matrix for every upstream case."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from enforcer.analysis.matrix import reachability
from enforcer.analysis.service_matrix import service_document
from enforcer.cli import main
from enforcer.lab.services import PER_POD_ANNOTATION, endpoint_slices, per_pod_service
from enforcer.model.parse_services import parse_service_object
from tests.lab import upstream
from tests.model.netpol_builders import state_of


def _with_ips(objects: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    ips = {}
    for i, obj in enumerate(o for o in objects if o["kind"] == "Pod"):
        key = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
        ips[key] = f"198.18.1.{i + 2}"
        obj["status"] = {"phase": "Running", "podIPs": [{"ip": ips[key]}]}
    return objects, ips


@pytest.mark.parametrize("case", sorted(upstream.cases({"x/a": "1.1.1.1", "x/b": "1.1.1.2"})))
def test_service_matrix_equals_pod_matrix_with_a_service_per_pod(case: str) -> None:
    cluster, ips = _with_ips(upstream.cluster())
    ports = [(p, proto) for p in upstream.PORTS for proto in upstream.PROTOCOLS]
    services = [
        per_pod_service(o["metadata"]["namespace"], o["metadata"]["name"], ports)
        for o in cluster
        if o["kind"] == "Pod"
    ]
    state = state_of(*cluster, *services, *upstream.cases(ips)[case])
    # The lab's EndpointSlice controller gives each per-pod Service its pod.
    per_pod = {
        f"{o['metadata']['namespace']}/{o['metadata']['name']}": o["metadata"]["annotations"][
            PER_POD_ANNOTATION
        ]
        for o in services
    }
    for es in endpoint_slices(state, per_pod, {}):
        state.upsert(parse_service_object(es))
    for port, proto in upstream.PROBED:
        doc = service_document(state, port, proto)
        assert doc["matrix"] == reachability(state, port, proto)
        assert doc["routes"]["x/a"] == [f"x/s-a:{port} -> {port}"]


def _write(tmp_path: Path, docs: list[dict[str, Any]]) -> str:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return str(path)


def _pod(name: str, labels: dict[str, str], port: int) -> dict[str, Any]:
    pod = upstream.pod("x", name, labels)
    pod["spec"]["containers"][0]["ports"] = [{"name": "http", "containerPort": port}]
    return pod


EXAMPLE = [
    upstream.namespace("x"),
    _pod("client", {"app": "client"}, 80),
    _pod("b", {"app": "web", "backend": "b"}, 8080),
    _pod("c", {"app": "web", "backend": "c"}, 9090),
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"namespace": "x", "name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]},
    },
    upstream.policy(
        "client-to-b",
        "x",
        {
            "podSelector": upstream.sel(app="client"),
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": upstream.sel(backend="b")}]}],
        },
    ),
]


def test_cli_json_judges_each_backend_on_its_named_target_port(capsys, tmp_path) -> None:
    code = main(["analyze", _write(tmp_path, EXAMPLE), "--via", "service", "--output", "json"])
    out, _ = capsys.readouterr()
    assert code == 0
    (doc,) = json.loads(out)  # no --port: every Service port, here 80/TCP
    assert (doc["port"], doc["protocol"], doc["via"]) == (80, "TCP", "service")
    assert doc["routes"] == {"x/b": ["x/web:80 -> 8080"], "x/c": ["x/web:80 -> 9090"]}
    assert doc["matrix"]["x/client"] == {"x/b": True, "x/c": False}
    assert doc["matrix"]["x/b"] == {"x/b": True, "x/c": True}


def test_cli_table_through_services(capsys, tmp_path) -> None:
    code = main(["analyze", _write(tmp_path, EXAMPLE), "--via", "service", "--port", "80"])
    out, _ = capsys.readouterr()
    assert code == 0
    assert "Port 80/TCP through Services" in out
    client_row = next(line for line in out.splitlines() if "x/client" in line and "--" in line)
    assert client_row.split()[-2:] == ["OK", "--"]
    assert "4 of 4 pairs allowed" not in out and "3 of 4 pairs allowed" in out
