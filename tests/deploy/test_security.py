"""The rendered DaemonSet and RBAC grant what the agent needs and nothing more."""

from __future__ import annotations

import re
from typing import Any

from .contract import (
    AGENT_CAPABILITIES,
    AGENT_HOST_PATHS,
    AGENT_QUARANTINE_WRITES,
    AGENT_READS,
    METRICS_PORT,
    PIN_DIR,
    READ_VERBS,
)
from .render import DAEMONSET_DIR, containers, find, load_documents, render

Obj = dict[str, Any]

# The one privileged step: mounting bpffs on the node when it has none (see daemonset.yaml).
# Its type, not `mountpoint`: the hostPath volume is a bind mount there whatever the node has.
MOUNT_BPFFS = '[ "$(stat -f -c %T /sys/fs/bpf)" = bpf_fs ] || mount -t bpf bpf /sys/fs/bpf'


def _agent() -> tuple[Obj, Obj]:
    ds = find(render(), "DaemonSet", "enforcer-agent")
    pod = ds["spec"]["template"]["spec"]
    (agent,) = [c for c in pod["containers"] if c["name"] == "agent"]
    return pod, agent


def _host_paths(pod: Obj) -> dict[str, str]:
    """volume name -> node path, for hostPath volumes."""
    return {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}


def test_agent_drops_all_capabilities_and_adds_exactly_the_needed_ones() -> None:
    _, agent = _agent()
    sc = agent["securityContext"]
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sorted(sc["capabilities"]["add"]) == sorted(AGENT_CAPABILITIES)
    assert len(sc["capabilities"]["add"]) == len(AGENT_CAPABILITIES)
    assert sc.get("privileged", False) is False
    assert sc["readOnlyRootFilesystem"] is True


def test_only_the_bpffs_mount_step_is_privileged() -> None:
    pod, _ = _agent()
    privileged = [c for c in containers(pod) if c.get("securityContext", {}).get("privileged")]
    assert [c["name"] for c in privileged] == ["mount-bpffs"]
    (init,) = privileged
    assert init in pod["initContainers"]
    assert init["command"] == ["/bin/sh", "-c", MOUNT_BPFFS]
    # It sees the node's /sys/fs/bpf and nothing else of the node.
    paths = _host_paths(pod)
    assert [(paths.get(m["name"]), m["mountPath"]) for m in init["volumeMounts"]] == [
        ("/sys/fs/bpf", "/sys/fs/bpf")
    ]


def test_bidirectional_propagation_only_in_the_privileged_init() -> None:
    pod, _ = _agent()
    for c in containers(pod):
        for m in c.get("volumeMounts", []):
            if m.get("mountPropagation") == "Bidirectional":
                assert c["name"] == "mount-bpffs"


def test_agent_host_mounts_are_exactly_the_needed_paths() -> None:
    pod, agent = _agent()
    paths = _host_paths(pod)
    mounted = {
        paths[m["name"]]: (m["mountPath"], m.get("readOnly", False))
        for m in agent["volumeMounts"]
        if m["name"] in paths
    }
    assert {p: ro for p, (_, ro) in mounted.items()} == AGENT_HOST_PATHS
    # Node paths appear at the same place in the container (the headers' symlinks need it).
    assert all(path == mount for path, (mount, _) in mounted.items())
    assert set(paths.values()) == set(AGENT_HOST_PATHS)
    assert PIN_DIR.startswith(mounted["/sys/fs/bpf"][0] + "/")


def test_agent_pod_settings() -> None:
    pod, agent = _agent()
    ds = find(render(), "DaemonSet", "enforcer-agent")
    assert pod["hostNetwork"] is True
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["tolerations"] == [{"operator": "Exists"}]  # every taint, every effect
    assert ds["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
    }
    env = {e["name"]: e for e in agent["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert agent["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert agent["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert agent["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert agent["resources"] == {
        "requests": {"cpu": "100m", "memory": "200Mi"},
        "limits": {"memory": "400Mi"},
    }


def test_agent_arguments_match_ports_and_pins() -> None:
    _, agent = _agent()
    args = dict(a.removeprefix("--").split("=", 1) for a in agent["args"])
    assert args == {
        "source": "k8s",
        "pin-dir": PIN_DIR,
        "metrics-addr": f"0.0.0.0:{METRICS_PORT}",
        "api-socket": "/run/enforcer/agent.sock",  # under the /run/enforcer host path
        "unknown-endpoint-verdict": "deny",
    }
    (port,) = agent["ports"]
    assert (port["name"], port["containerPort"]) == ("metrics", METRICS_PORT)
    svc = find(render(), "Service", "enforcer-agent-metrics")
    assert svc["spec"]["ports"][0]["targetPort"] == "metrics"


# What the agent's network API asks of the API server about a caller (enforcer/agent/authn.py).
AGENT_REVIEWS = {("authentication.k8s.io", "tokenreviews", "create"),
                 ("authorization.k8s.io", "subjectaccessreviews", "create")}


def test_rbac_grants_only_reads_of_what_the_agent_watches() -> None:
    objects = render()
    roles = [o for o in objects if o["kind"] in {"Role", "ClusterRole"}
             and o["metadata"]["name"] == "enforcer-agent"]
    assert len(roles) == 1
    granted = set()
    for rule in roles[0]["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}  # no resourceNames tricks
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                assert "*" not in group + resource and "/" not in resource
                granted |= {(group, resource, verb) for verb in rule["verbs"]}
    assert granted == ({(g, r, v) for g, r in AGENT_READS for v in READ_VERBS} | AGENT_REVIEWS
                       | AGENT_QUARANTINE_WRITES)


def test_binding_ties_the_role_to_the_daemonsets_account() -> None:
    objects = render()
    pod, _ = _agent()
    sa = find(objects, "ServiceAccount", "enforcer-agent")
    binding = find(objects, "ClusterRoleBinding", "enforcer-agent")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "enforcer-agent",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "enforcer-system"}
    ]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    # One binding each: the agent's and the console's (tests/deploy/test_console.py).
    assert [o["kind"] for o in objects].count("ClusterRoleBinding") == 2
    assert not [o for o in objects if o["kind"] == "RoleBinding"]


def test_uninstall_cleans_the_agents_pin_dir_with_no_privilege_and_no_api_access() -> None:
    (ds,) = load_documents(DAEMONSET_DIR / "uninstall.yaml")
    pod = ds["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["tolerations"] == [{"operator": "Exists"}]
    (init,) = pod["initContainers"]
    script = init["command"][-1]
    assert re.search(rf"enforcer uninstall-node --pin-dir {re.escape(PIN_DIR)}\b", script)
    assert f"[ -e {PIN_DIR} ]" in script  # it fails when pins are left behind
    for c in containers(pod):
        sc = c["securityContext"]
        assert sc.get("privileged", False) is False
        assert sc["capabilities"]["drop"] == ["ALL"]
    (done,) = pod["containers"]
    assert "add" not in done["securityContext"]["capabilities"]
    assert set(init["securityContext"]["capabilities"]["add"]) <= AGENT_CAPABILITIES


def test_every_container_uses_the_kustomized_image() -> None:
    pod, _ = _agent()
    assert {c["image"] for c in containers(pod)} == {"enforcer:dev"}
