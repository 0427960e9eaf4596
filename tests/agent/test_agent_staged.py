"""Staged policies in the agent: kept apart from the enforced state (the compiler never sees
them), validated like NetworkPolicies, and judged in a shadow whose preview is kept current
incrementally: after any sequence of changes it is the preview built from scratch."""

from __future__ import annotations

import copy
import random
import threading
from typing import Any

from enforcer.agent.intake import Intake
from enforcer.digest import set_digest
from enforcer.flows.record import FlowRecord
from enforcer.flows.staged import StagedView
from enforcer.model.cluster import ClusterState
from enforcer.model.staged import as_if_applied
from enforcer.sources.base import EventType, SourceEvent

STAGED_API = "enforcer.dev/v1alpha1"


def pod(name: str, ip: str, app: str = "a", ns: str = "x") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": ns, "name": name, "labels": {"app": app}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [
            {"containerPort": 80}]}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    }


def netpol(name: str, spec: dict[str, Any], ns: str = "x", staged: bool = False) -> dict[str, Any]:
    return {
        "apiVersion": STAGED_API if staged else "networking.k8s.io/v1",
        "kind": "StagedNetworkPolicy" if staged else "NetworkPolicy",
        "metadata": {"namespace": ns, "name": name},
        "spec": spec,
    }


DENY_INGRESS = {"podSelector": {}, "policyTypes": ["Ingress"]}
ALLOW_FROM_A = {
    "podSelector": {"matchLabels": {"app": "b"}},
    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}]}],
}


def event(etype: EventType, obj: dict[str, Any] | None = None, kind: str | None = None) -> Any:
    return SourceEvent(etype, kind or (obj or {}).get("kind"), obj, None)


def flow(src: str, dst: str, direction: str = "ingress") -> FlowRecord:
    return FlowRecord(source=src, destination=dst, port=80, protocol="TCP",
                      direction=direction, verdict="allowed")


def cluster(intake: Intake) -> None:
    for obj in (pod("a", "10.0.0.1"), pod("b", "10.0.0.2", "b"), pod("c", "10.0.0.3", "c")):
        intake.apply(event(EventType.ADDED, obj))


def test_staged_policies_are_kept_apart_and_never_change_the_enforced_state() -> None:
    intake = Intake(lambda: "test")
    cluster(intake)
    generation = intake.state.generation
    staged = netpol("deny", DENY_INGRESS, staged=True)
    assert intake.apply(event(EventType.ADDED, staged)) is None, "nothing for the compiler"
    assert intake.state.policies == {} and intake.state.generation == generation
    assert set(intake.staged) == {("StagedNetworkPolicy", "x", "deny")}
    assert ("StagedNetworkPolicy", "x", "deny") not in intake.objects
    assert intake.shadow.names() == ["x/deny"]  # what /status lists
    # The digest covers it (the lab waits on it), as the manifests' digest does.
    objects = [pod("a", "10.0.0.1"), pod("b", "10.0.0.2", "b"), pod("c", "10.0.0.3", "c"), staged]
    assert intake.digest == set_digest(objects)
    # A flow b -> a's ingress would be denied by it; the record says so, naming it.
    judged = intake.shadow(flow("x/b", "x/a"))
    assert judged.staged is not None and judged.staged.verdict == "would-deny"
    assert judged.staged.policies == ("x/deny",)
    # A same-named NetworkPolicy is another object: enforced, and shadowed in the preview.
    change = intake.apply(event(EventType.ADDED, netpol("deny", ALLOW_FROM_A)))
    assert change is not None and intake.state.policies["x/deny"].pod_selector.match_labels
    with intake.shadow.lock:
        preview = intake.shadow.preview
        assert preview is not None
        assert not preview.policies["x/deny"].pod_selector.match_labels, "the staged one"
    # Deleted: nothing staged, no preview, records pass untouched.
    assert intake.apply(event(EventType.DELETED, staged)) is None
    assert intake.staged == {} and intake.shadow.preview is None
    record = flow("x/c", "x/b")
    assert intake.shadow(record) is record


def test_invalid_staged_policy_is_rejected_like_a_networkpolicy_and_the_last_valid_stays() -> None:
    invalid: list[str] = []
    intake = Intake(lambda: "test", invalid.append)
    cluster(intake)
    intake.apply(event(EventType.ADDED, netpol("deny", DENY_INGRESS, staged=True)))
    digest = intake.digest
    bad_spec = {"podSelector": {}, "ingress": [{"ports": [{"port": 70000}]}]}
    assert intake.apply(event(EventType.MODIFIED, netpol("deny", bad_spec, staged=True))) is None
    assert invalid == ["StagedNetworkPolicy"]
    message = intake.invalid[-1]
    intake.apply(event(EventType.ADDED, netpol("deny", bad_spec)))
    assert invalid == ["StagedNetworkPolicy", "NetworkPolicy"]
    # The same error, naming its own kind.
    assert message == intake.invalid[-1].replace("NetworkPolicy", "StagedNetworkPolicy", 1)
    assert intake.digest == digest
    assert intake.staged[("StagedNetworkPolicy", "x", "deny")].ingress == ()
    assert intake.shadow(flow("x/b", "x/a")).staged is not None


def test_other_groups_staged_kind_is_ignored() -> None:
    intake = Intake(lambda: "test")
    calico = {**netpol("deny", DENY_INGRESS, staged=True), "apiVersion": "projectcalico.org/v3"}
    assert intake.apply(event(EventType.ADDED, calico)) is None
    assert intake.staged == {} and intake.invalid == []


def test_relist_of_staged_policies_removes_the_ones_it_no_longer_names() -> None:
    intake = Intake(lambda: "test")
    cluster(intake)
    intake.apply(event(EventType.ADDED, netpol("one", DENY_INGRESS, staged=True)))
    intake.apply(event(EventType.ADDED, netpol("two", DENY_INGRESS, staged=True)))
    intake.begin_relist("StagedNetworkPolicy")
    intake.apply(event(EventType.ADDED, netpol("two", DENY_INGRESS, staged=True)))
    assert intake.finish_relist() == [], "no enforced change"
    assert set(intake.staged) == {("StagedNetworkPolicy", "x", "two")}
    assert set(intake.shadow.policies) == {"x/two"}
    assert len(intake.state.pods) == 3


# -- the preview, kept incrementally, is the preview built from scratch ------------------------


def signature(state: ClusterState) -> dict[str, Any]:
    """Everything a verdict reads: objects, and what the indexes answer."""
    pods = dict(state.pods)
    return {
        "namespaces": dict(state.namespaces),
        "names": state.namespace_names(),
        "pods": pods,
        "policies": dict(state.policies),
        "endpoints": state.endpoint_keys(),
        "selecting": {k: sorted(p.key for p in state.policies_selecting(k)) for k in pods},
        "selected": {k: sorted(state.pods_selected_by(p)) for k, p in state.policies.items()},
        "ips": {str(ip): state.pods_by_ip(ip) for p in pods.values() for ip in p.ips},
    }


def random_change(rng: random.Random) -> SourceEvent:
    name = rng.choice(["p", "q", "r"])
    ns = rng.choice(["x", "y"])
    etype = rng.choice([EventType.ADDED, EventType.MODIFIED, EventType.DELETED])
    what = rng.random()
    if what < 0.4:
        obj = pod(rng.choice(["a", "b", "c", "d"]), f"10.0.0.{rng.randint(1, 5)}",
                  rng.choice(["a", "b"]), ns)
    elif what < 0.5:
        obj = {"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": ns, "labels": {"team": rng.choice(["t", "u"])}}}
    else:
        spec = copy.deepcopy(rng.choice([DENY_INGRESS, ALLOW_FROM_A]))
        obj = netpol(name, spec, ns, staged=rng.random() < 0.5)
    return event(etype, obj)


def test_incremental_preview_equals_the_preview_built_from_scratch() -> None:
    for seed in range(60):
        rng = random.Random(seed)
        intake = Intake(lambda: "test")
        for step in range(40):
            intake.apply(random_change(rng))
            staged = list(intake.staged.values())
            preview = intake.shadow.preview
            if not staged:
                assert preview is None, (seed, step)
                continue
            assert preview is not None
            want = as_if_applied(intake.state, staged)
            assert signature(preview) == signature(want), (seed, step)
            # And the verdicts the shadow gives are StagedView's, built from scratch.
            scratch = StagedView(intake.state, staged)
            for src in intake.state.pods:
                for dst in intake.state.pods:
                    for direction in ("ingress", "egress"):
                        record = flow(src, dst, direction)
                        assert intake.shadow(record).staged == scratch.verdict(record), (
                            seed, step, src, dst, direction)


def test_verdicts_on_another_thread_while_the_state_changes() -> None:
    """The ring-buffer thread judges while the loop applies changes: no verdict fails, and
    each is the one of some consistent state."""
    intake = Intake(lambda: "test")
    cluster(intake)
    intake.apply(event(EventType.ADDED, netpol("deny", DENY_INGRESS, staged=True)))
    stop = threading.Event()
    seen: set[Any] = set()

    def judge() -> None:
        while not stop.is_set():
            seen.add(intake.shadow(flow("x/b", "x/a")).staged)

    reader = threading.Thread(target=judge)
    reader.start()
    try:
        rng = random.Random(1)
        for _ in range(3000):
            intake.apply(random_change(rng))
    finally:
        stop.set()
        reader.join()
    assert intake.shadow.errors == 0
    assert seen  # judged throughout


def test_status_prints_the_staged_policies() -> None:
    from enforcer.commands.status import format_status

    status = {"node": "n1", "ready": True, "source": "dir:/m", "map_full": 0, "endpoints": [],
              "staged_policies": ["x/deny", "y/narrow"]}
    assert "staged (flows judged, never enforced): x/deny, y/narrow" in format_status(status)
    assert "staged" not in format_status({**status, "staged_policies": []})
