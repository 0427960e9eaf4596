"""A thin layer over the Kubernetes client for the e2e suite: create, wait, exec, read back."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.stream import stream

from .workloads import NAMESPACES, real_namespace

AGENT_NAMESPACE = "enforcer-system"
AGENT_SELECTOR = "app.kubernetes.io/name=enforcer,app.kubernetes.io/component=agent"
AGENT_PORT = 9830

Obj = dict[str, Any]


class ExecError(RuntimeError):
    pass


@dataclass(frozen=True)
class PodInfo:
    namespace: str
    name: str
    node: str
    ipv4: str | None
    ipv6: str | None

    def ip(self, family: int) -> str | None:
        return self.ipv4 if family == 4 else self.ipv6


class Deployed:
    """The x/y/z by a/b/c pods of this run, keyed by logical name ('x/a')."""

    def __init__(self, run_id: str, pods: dict[str, PodInfo]) -> None:
        self.run_id = run_id
        self.pods = pods
        self.namespaces = [real_namespace(n, run_id) for n in NAMESPACES]

    def logical(self, real_key: str) -> str:
        """'x-1a2b3c/a' -> 'x/a'."""
        ns, pod = real_key.split("/")
        return f"{ns.removesuffix('-' + self.run_id)}/{pod}"

    def real(self, logical_key: str) -> str:
        ns, pod = logical_key.split("/")
        return f"{real_namespace(ns, self.run_id)}/{pod}"


class Cluster:
    def __init__(self, kubeconfig: str) -> None:
        self.api = config.new_client_from_config(config_file=kubeconfig)
        self.core = client.CoreV1Api(self.api)
        self.net = client.NetworkingV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)

    # -- objects --------------------------------------------------------------------------

    def create(self, obj: Obj) -> None:
        kind, ns = obj["kind"], obj["metadata"].get("namespace")
        if kind == "Namespace":
            self.core.create_namespace(obj)
        elif kind == "Pod":
            self.core.create_namespaced_pod(ns, obj)
        elif kind == "NetworkPolicy":
            self.net.create_namespaced_network_policy(ns, obj)
        else:
            raise ValueError(f"the suite does not create {kind}")

    def delete_namespace(self, name: str) -> None:
        try:
            self.core.delete_namespace(name, grace_period_seconds=0)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def delete_policies(self, namespaces: list[str]) -> None:
        for ns in namespaces:
            self.net.delete_collection_namespaced_network_policy(ns)

    def wait_for_pods(self, namespaces: list[str], count: int, timeout: float = 600) -> list[Obj]:
        """Every pod Running with all containers ready and an IP; returns them read back."""
        deadline = time.monotonic() + timeout
        while True:
            pods = [p for ns in namespaces for p in self.list_pods(ns)]
            ready = [p for p in pods if _pod_ready(p)]
            if len(ready) == count:
                return ready
            if time.monotonic() > deadline:
                states = {
                    f"{p['metadata']['namespace']}/{p['metadata']['name']}": p["status"].get(
                        "phase"
                    )
                    for p in pods
                }
                raise TimeoutError(f"pods not ready after {timeout}s: {states}")
            time.sleep(2)

    def list_pods(self, namespace: str) -> list[Obj]:
        items = self.core.list_namespaced_pod(namespace).items
        return [self._plain(p, "v1", "Pod") for p in items]

    def read_back(self, namespaces: list[str]) -> list[Obj]:
        """Namespaces, pods and NetworkPolicies as the API server has them now."""
        objects = [
            self._plain(self.core.read_namespace(ns), "v1", "Namespace") for ns in namespaces
        ]
        for ns in namespaces:
            objects += self.list_pods(ns)
            policies = self.net.list_namespaced_network_policy(ns).items
            objects += [self._plain(p, "networking.k8s.io/v1", "NetworkPolicy") for p in policies]
        return objects

    def _plain(self, obj: Any, api_version: str, kind: str) -> Obj:
        data: Obj = self.api.sanitize_for_serialization(obj)
        data["apiVersion"], data["kind"] = api_version, kind  # list items lack them
        return data

    # -- exec -----------------------------------------------------------------------------

    def exec(self, pod: PodInfo, container: str, command: list[str], timeout: float = 120) -> str:
        """Run a command in a container; its stdout, or ExecError with stderr."""
        ws = stream(
            self.core.connect_get_namespaced_pod_exec,
            pod.name,
            pod.namespace,
            container=container,
            command=command,
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
            _preload_content=False,
        )
        try:
            ws.run_forever(timeout=timeout)
            out, err = ws.read_stdout(timeout=1) or "", ws.read_stderr(timeout=1) or ""
            code = ws.returncode
        finally:
            ws.close()
        if code != 0:
            raise ExecError(f"{pod.namespace}/{pod.name} {command[:2]}... exit {code}: {err}")
        return out

    def exec_json(self, pod: PodInfo, container: str, command: list[str]) -> Any:
        out = self.exec(pod, container, command)
        return json.loads(out.strip().splitlines()[-1])

    # -- the agents -----------------------------------------------------------------------

    def agent_pods(self) -> list[Obj]:
        items = self.core.list_namespaced_pod(AGENT_NAMESPACE, label_selector=AGENT_SELECTOR)
        return [self._plain(p, "v1", "Pod") for p in items.items]

    def agent_get(self, pod_name: str, path: str) -> str:
        """GET a path of an agent's metrics endpoint through the API server's pod proxy."""
        body: str = self.core.connect_get_namespaced_pod_proxy_with_path(
            f"{pod_name}:{AGENT_PORT}", AGENT_NAMESPACE, path.lstrip("/")
        )
        return body

    def nodes(self) -> list[str]:
        return [n.metadata.name for n in self.core.list_node().items]


def _pod_ready(pod: Obj) -> bool:
    status = pod.get("status", {})
    statuses = status.get("containerStatuses") or []
    return (
        status.get("phase") == "Running"
        and bool(status.get("podIPs"))
        and len(statuses) == len(pod["spec"]["containers"])
        and all(s.get("ready") for s in statuses)
    )


def pod_info(pod: Obj) -> PodInfo:
    ips = [entry["ip"] for entry in pod["status"].get("podIPs") or []]
    return PodInfo(
        namespace=pod["metadata"]["namespace"],
        name=pod["metadata"]["name"],
        node=pod["spec"]["nodeName"],
        ipv4=next((ip for ip in ips if ":" not in ip), None),
        ipv6=next((ip for ip in ips if ":" in ip), None),
    )


INPOD_SOURCE = (Path(__file__).with_name("inpod.py")).read_text()


def inpod_command(command: str, arg: Any) -> list[str]:
    """`python3 -c <inpod.py> COMMAND JSON`, for the toolbox container."""
    return ["python3", "-c", INPOD_SOURCE, command, json.dumps(arg)]
