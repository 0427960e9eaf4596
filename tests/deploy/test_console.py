"""The console's Deployment, Service and RBAC: what it needs to read the cluster and the
agents, and nothing more; its arguments are the CLI's."""

from __future__ import annotations

from typing import Any

from enforcer.cli import build_parser
from enforcer.commands.console import CONSOLE_KINDS
from enforcer.console.agents import AGENT_PORT, DEFAULT_NAMESPACE, DEFAULT_SELECTOR

from .contract import METRICS_PORT, READ_VERBS
from .render import containers, find, render

Obj = dict[str, Any]

CONSOLE_READS = {
    ("", "pods"),
    ("", "namespaces"),
    ("networking.k8s.io", "networkpolicies"),
    ("enforcer.dev", "stagednetworkpolicies"),
}
# What each agent's SubjectAccessReview asks before serving its network API to the console.
AGENT_API = {("enforcer.dev", "agents/flows", "get"), ("enforcer.dev", "agents/status", "get")}


def _console() -> tuple[Obj, Obj, Obj]:
    objects = render()
    deployment = find(objects, "Deployment", "enforcer-console")
    pod = deployment["spec"]["template"]["spec"]
    (console,) = pod["containers"]
    return deployment, pod, console


def test_the_console_role_reads_what_the_page_shows_and_gets_the_agents_flows_and_status() -> None:
    role = find(render(), "ClusterRole", "enforcer-console")
    granted = set()
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}  # no resourceNames tricks
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                assert "*" not in group + resource
                granted |= {(group, resource, verb) for verb in rule["verbs"]}
    assert granted == {(g, r, v) for g, r in CONSOLE_READS for v in READ_VERBS} | AGENT_API


def test_the_role_grants_exactly_the_kinds_the_console_watches() -> None:
    plural = {"Pod": ("", "pods"), "Namespace": ("", "namespaces"),
              "NetworkPolicy": ("networking.k8s.io", "networkpolicies"),
              "StagedNetworkPolicy": ("enforcer.dev", "stagednetworkpolicies")}
    assert {plural[kind] for kind in CONSOLE_KINDS} == CONSOLE_READS


def test_the_binding_ties_the_console_role_to_the_deployments_account() -> None:
    objects = render()
    _, pod, _ = _console()
    binding = find(objects, "ClusterRoleBinding", "enforcer-console")
    sa = find(objects, "ServiceAccount", "enforcer-console")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "enforcer-console"
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "enforcer-console", "namespace": "enforcer-system"}]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    # The agent's account is not the console's: pods of the DaemonSet cannot read each other.
    agent = find(objects, "DaemonSet", "enforcer-agent")["spec"]["template"]["spec"]
    assert agent["serviceAccountName"] != pod["serviceAccountName"]


def test_one_unprivileged_replica_with_nothing_of_the_node() -> None:
    deployment, pod, console = _console()
    assert deployment["spec"]["replicas"] == 1
    assert not pod.get("hostNetwork") and not pod.get("hostPID")
    assert not [v for v in pod.get("volumes", []) if "hostPath" in v]
    sc = console["securityContext"]
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {c["image"] for c in containers(pod)} == {"enforcer:dev"}
    assert console["resources"]["limits"]["memory"]


def test_the_arguments_are_the_clis_and_the_ports_line_up() -> None:
    deployment, _, console = _console()
    assert console["command"] == ["enforcer", "console"]
    args = build_parser().parse_args(["console", *console["args"]])
    assert (args.agents, args.source) == ("k8s", "k8s")
    port = int(args.listen.rpartition(":")[2])
    (declared,) = console["ports"]
    assert (declared["name"], declared["containerPort"]) == ("http", port)
    for probe in ("readinessProbe", "livenessProbe"):
        assert console[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    svc = find(render(), "Service", "enforcer-console")
    assert svc["spec"]["selector"] == pod_labels(deployment)
    assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(port, "http")]
    assert "type" not in svc["spec"]  # ClusterIP: the page shows every flow of the cluster


def test_the_console_finds_the_daemonsets_agents_by_default() -> None:
    ds = find(render(), "DaemonSet", "enforcer-agent")
    assert ds["metadata"]["namespace"] == DEFAULT_NAMESPACE
    wanted = dict(term.split("=", 1) for term in DEFAULT_SELECTOR.split(","))
    assert wanted.items() <= pod_labels(ds).items()
    assert AGENT_PORT == METRICS_PORT  # the agent's network API, on the host network


def pod_labels(workload: Obj) -> dict[str, str]:
    return dict(workload["spec"]["template"]["metadata"]["labels"])
