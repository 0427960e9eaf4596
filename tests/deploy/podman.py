"""Running a rendered Pod spec's containers with podman, as a kubelet would run them.

Only what the enforcer's manifests use is translated; anything else in a container, its security
context or a volume is an error, so a manifest cannot grow a setting the container test silently
leaves out. The node is a network namespace (hostNetwork), node paths may be moved under the
test's own directories, and emptyDirs are directories of the test's, shared by the pod's
containers as a kubelet shares them.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .render import REPO

Obj = dict[str, Any]

CONTAINERS_CONF = REPO / "scripts" / "podman-containers.conf"
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

# Pod and container fields that only schedule, restart or publish: nothing a container run on
# one node differs by. Probes and ports are exercised by the test itself.
_SCHEDULING = {
    "tolerations", "priorityClassName", "dnsPolicy", "terminationGracePeriodSeconds",
    "serviceAccountName", "automountServiceAccountToken", "hostNetwork", "volumes",
    "initContainers", "containers",
}  # fmt: skip
_CONTAINER_RUN = {
    "name", "image", "imagePullPolicy", "command", "args", "env", "securityContext",
    "volumeMounts", "resources",
}  # fmt: skip
_CONTAINER_CHECKED_BY_TEST = {"ports", "startupProbe", "livenessProbe", "readinessProbe"}
_PROPAGATION = {None: "rprivate", "HostToContainer": "rslave", "Bidirectional": "rshared"}


def podman(
    *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CONTAINERS_CONF=str(CONTAINERS_CONF))
    result = subprocess.run(
        ["podman", *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {result.returncode}\n{result.stderr}")
    return result


@dataclass
class PodRun:
    """One pod of a DaemonSet on one test node."""

    pod_spec: Obj
    netns: str  # the node's network namespace: hostNetwork
    node_name: str
    workdir: Path  # emptyDirs and the service account live under it
    node_paths: Mapping[str, Path] = field(default_factory=dict)  # node path -> the test's
    env: Mapping[str, str] = field(default_factory=dict)  # the kubelet's (KUBERNETES_SERVICE_*)
    service_account: Mapping[str, bytes] = field(default_factory=dict)  # token, ca.crt, ...
    names: list[str] = field(default_factory=list)  # containers started, for cleanup

    def __post_init__(self) -> None:
        unknown = set(self.pod_spec) - _SCHEDULING
        assert not unknown, f"pod spec fields the container test does not translate: {unknown}"
        assert self.pod_spec.get("hostNetwork") is True, "the agent runs on the node's network"

    def container(self, name: str) -> Obj:
        found = [
            c
            for c in self.pod_spec.get("initContainers", []) + self.pod_spec["containers"]
            if c["name"] == name
        ]
        assert len(found) == 1, f"one container {name}"
        return found[0]

    # -- translation ----------------------------------------------------------------------------

    def _security(self, c: Obj) -> list[str]:
        sc = dict(c.get("securityContext", {}))
        out: list[str] = []
        privileged = sc.pop("privileged", False)
        if privileged:
            out.append("--privileged")
        if "runAsUser" in sc:
            out += ["--user", str(sc.pop("runAsUser"))]
        if sc.pop("readOnlyRootFilesystem", False):
            # podman would mount tmpfs on /tmp, /run and /var/tmp: a kubelet mounts nothing
            out += ["--read-only", "--read-only-tmpfs=false"]
        seccomp = sc.pop("seccompProfile", None)
        if seccomp is not None:
            assert seccomp == {"type": "RuntimeDefault"}, seccomp
            assert not privileged
            # podman's default profile is the runtime default
        if sc.pop("allowPrivilegeEscalation", True) is False:
            out += ["--security-opt", "no-new-privileges"]
        caps = dict(sc.pop("capabilities", {}))  # a copy: the manifest stays as it was
        for cap in caps.pop("drop", []):
            out += ["--cap-drop", cap.lower()]
        for cap in caps.pop("add", []):
            out += ["--cap-add", cap.lower()]
        assert not caps, f"capabilities fields not translated: {caps}"
        assert not sc, f"securityContext fields not translated: {sc}"
        return out

    def _host_path(self, volume: Obj) -> Path:
        hp = volume["hostPath"]
        path = Path(self.node_paths.get(hp["path"], hp["path"]))
        kind = hp.get("type", "")
        if kind == "DirectoryOrCreate":
            path.mkdir(parents=True, exist_ok=True)
        elif kind == "Directory":
            assert path.is_dir(), f"hostPath {hp['path']} ({path}) is not a directory"
        else:
            raise AssertionError(f"hostPath type {kind!r} not translated")
        return path

    def _mounts(self, c: Obj) -> list[str]:
        volumes = {v["name"]: v for v in self.pod_spec.get("volumes", [])}
        out: list[str] = []
        for m in c.get("volumeMounts", []):
            unknown = set(m) - {"name", "mountPath", "readOnly", "mountPropagation"}
            assert not unknown, f"volumeMount fields not translated: {unknown}"
            vol = volumes[m["name"]]
            if "hostPath" in vol:
                source = self._host_path(vol)
            elif "emptyDir" in vol:
                source = self.workdir / "emptydir" / m["name"]
                source.mkdir(parents=True, exist_ok=True)
            else:
                raise AssertionError(f"volume {vol} not translated")
            propagation = m.get("mountPropagation")
            if propagation == "Bidirectional":
                assert c.get("securityContext", {}).get("privileged"), "the API refuses it"
            opts = ["ro" if m.get("readOnly") else "rw", _PROPAGATION[propagation]]
            out += ["--volume", f"{source}:{m['mountPath']}:{','.join(opts)}"]
        if self.pod_spec.get("automountServiceAccountToken", True) and self.service_account:
            sa = self.workdir / "serviceaccount"
            sa.mkdir(parents=True, exist_ok=True)
            for name, data in self.service_account.items():
                (sa / name).write_bytes(data)
            out += ["--volume", f"{sa}:{SERVICE_ACCOUNT_DIR}:ro"]
        return out

    def _env(self, c: Obj) -> list[str]:
        env = dict(self.env)
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"]
            elif e.get("valueFrom") == {"fieldRef": {"fieldPath": "spec.nodeName"}}:
                env[e["name"]] = self.node_name
            else:
                raise AssertionError(f"env {e} not translated")
        return [a for k, v in env.items() for a in ("--env", f"{k}={v}")]

    def _resources(self, c: Obj) -> list[str]:
        res = c.get("resources", {})
        unknown = set(res.get("limits", {})) - {"memory"}
        assert not unknown, f"limits not translated: {unknown}"
        memory = res.get("limits", {}).get("memory")
        if memory is None:
            return []
        assert memory.endswith("Mi"), memory
        return ["--memory", f"{int(memory[:-2])}m"]

    def args(self, name: str, run_name: str, extra: Sequence[str] = ()) -> list[str]:
        c = self.container(name)
        unknown = set(c) - _CONTAINER_RUN - _CONTAINER_CHECKED_BY_TEST
        assert not unknown, f"container fields not translated: {unknown}"
        out = ["run", "--name", run_name, "--pull=never"]
        out += ["--network", f"ns:/run/netns/{self.netns}"]
        out += self._security(c) + self._mounts(c) + self._env(c) + self._resources(c)
        out += list(extra)
        if "command" in c:
            out += ["--entrypoint", json.dumps(c["command"])]
        return [*out, c["image"], *c.get("args", [])]

    # -- running ----------------------------------------------------------------------------------

    def run(
        self, name: str, run_name: str, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run a container to completion (an init container, a Job's)."""
        self.names.append(run_name)
        return podman(*self.args(name, run_name, ["--rm"]), timeout=timeout, check=False)

    def start(self, name: str, run_name: str) -> None:
        """Start a long-running container."""
        self.names.append(run_name)
        podman(*self.args(name, run_name, ["--detach"]))

    def remove_all(self) -> None:
        for run_name in self.names:
            podman("rm", "--force", "--time", "10", run_name, check=False)
