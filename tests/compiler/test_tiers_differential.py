"""The compiled tables with cluster-scoped tiers, looked up as the kernel does (tests/compiler/
simulator.py: the peer's own most specific entry, deny entries included, then the wildcard's),
agree with the model's verdicts on random mixes of cluster policies and NetworkPolicies (the
cases of the model's own differential test, which checks the model against a brute force);
incremental compilation of the same objects ends in the same tables; and every intermediate
state of the write plan from no cluster policy to all of them stays within old or new."""

from __future__ import annotations

import json
from ipaddress import ip_address

from hypothesis import HealthCheck, Phase, given, settings

from enforcer.analysis.inputs import planned_state
from enforcer.compiler import Compiler, plan_writes
from enforcer.datapath.policykeys import decode, encode, normalize
from enforcer.model.cluster import ClusterState
from enforcer.model.evaluate import evaluate, evaluate_ip
from enforcer.model.loader import load_text
from tests.model.test_clusterpolicy_differential import NODES, PROBES, case_st, manifests

from .simulator import Datapath

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                    phases=[p for p in Phase if p is not Phase.explain])
OUTSIDE = [ip_address(ip) for _, ip in NODES.values()] + [ip_address("203.0.113.5"),
                                                          ip_address("10.0.0.200")]


def _state(case: dict) -> ClusterState:
    result = load_text(json.dumps(manifests(case)), "case.json")
    assert not result.errors, [str(e) for e in result.errors]
    return planned_state(result)


def _verdicts(state: ClusterState, datapath: Datapath | None) -> dict[tuple, bool]:
    """Every pod pair and pod/outside address, TCP/UDP/SCTP: the model's verdicts, or the
    datapath's when one is given."""
    out: dict[tuple, bool] = {}
    pods = [p for p in state.pods.values() if state.is_endpoint(p)]
    for port, proto in PROBES:
        for src in pods:
            for dst in pods:
                probe = ("pods", src.key, dst.key, port, proto)
                if datapath is None:
                    out[probe] = evaluate(state, src.key, dst.key, port, proto, 4).allowed
                else:
                    out[probe] = datapath.connection(src.key, src.ips[0], dst.key, dst.ips[0],
                                                     proto, port)
            for ip in OUTSIDE:
                if state.pods_by_ip(ip) is not None:
                    continue
                for direction in ("Egress", "Ingress"):
                    probe = (direction, src.key, str(ip), port, proto)
                    if datapath is None:
                        out[probe] = evaluate_ip(state, src.key, ip, port, proto,
                                                 direction).allowed
                    elif direction == "Egress":
                        out[probe] = datapath.connection(src.key, src.ips[0], None, ip, proto,
                                                         port)
                    else:
                        out[probe] = datapath.connection(None, ip, src.key, src.ips[0], proto,
                                                         port)
    return out


def _wrong(want: dict, got: dict) -> list:
    return [(p, want[p], got[p]) for p in want if want[p] != got[p]]


@SETTINGS
@given(case_st())
def test_tiered_tables_agree_with_model(case: dict) -> None:
    state = _state(case)
    compiler = Compiler(state, node_name=None)
    datapath = Datapath()
    datapath.apply(compiler.full())
    want = _verdicts(state, None)
    wrong = _wrong(want, _verdicts(state, datapath))
    assert not wrong, f"{len(wrong)} of {len(want)} differ (probe, model, tables): {wrong[:5]}"
    # What the kernel reads back is what was written, deny entries included.
    for policy in compiler.policies().values():
        assert decode(encode(policy)) == normalize(policy)


@SETTINGS
@given(case_st())
def test_cluster_policies_added_one_by_one(case: dict) -> None:
    """Incremental: every cluster policy and Node arrives after the pods; each step's write
    plan never allows what neither the state before nor the state after allows."""
    full_state = _state(case)
    state = ClusterState()
    later = [*full_state.nodes.values(), *full_state.cluster_policies.values()]
    for ns in full_state.namespaces.values():
        state.upsert(ns)
    for pod in full_state.pods.values():
        state.upsert(pod)
    for policy in full_state.policies.values():
        state.upsert(policy)
    compiler = Compiler(state, node_name=None)
    datapath = Datapath()
    datapath.apply(compiler.full())
    for obj in later:
        before_verdicts = _verdicts(state, datapath)
        previous = dict(datapath.policies)
        state.upsert(obj)
        delta = compiler.on_upsert(obj)
        after = datapath.copy()
        after.apply(delta)
        after_verdicts = _verdicts(state, after)
        step_datapath = datapath.copy()
        for step in plan_writes(delta, previous):
            step_datapath.apply_step(step)
            now = _verdicts(state, step_datapath)
            extra = [p for p in now if now[p] and not (before_verdicts[p] or after_verdicts[p])]
            assert not extra, f"a write step allows what neither state does: {extra[:3]}"
        datapath = after
    want = _verdicts(state, None)
    wrong = _wrong(want, _verdicts(state, datapath))
    assert not wrong, f"incremental: {len(wrong)} differ: {wrong[:5]}"
    fresh = Compiler(state, node_name=None)
    fresh_datapath = Datapath()
    fresh_datapath.apply(fresh.full())
    assert _verdicts(state, fresh_datapath) == _verdicts(state, datapath)


def test_quarantine_beats_an_admin_accept() -> None:
    """A quarantined pod's table isolates both directions with nothing allowed, though an
    Admin-tier Accept selects it (the quarantine is above every policy)."""
    case = {"namespaces": {"ns1": {"team": "a"}, "ns2": {"team": "b"}},
            "pods": [{"name": "p0", "namespace": "ns1", "labels": {"app": "x"}, "sa": "sa1",
                      "node": "n1", "host": False, "ports": []},
                     {"name": "p1", "namespace": "ns2", "labels": {"app": "y"}, "sa": "sa1",
                      "node": "n1", "host": False, "ports": []}],
            "cluster": [{"kind": "ClusterNetworkPolicy", "tier": "Admin", "name": "accept-all",
                         "priority": 1, "subject": {"namespaces": {}},
                         "ingress": [{"action": "Accept", "name": "all", "ports": None,
                                      "peers": [{"namespaces": {}}]}],
                         "egress": [{"action": "Accept", "name": "all", "ports": None,
                                     "peers": [{"namespaces": {}}]}]}],
            "nps": []}
    docs = manifests(case)
    for doc in docs:
        if doc["kind"] == "Pod" and doc["metadata"]["name"] == "p0":
            doc["metadata"]["annotations"] = {"policy.enforcer.dev/quarantine": "scan"}
    result = load_text(json.dumps(docs), "case.json")
    state = planned_state(result)
    compiler = Compiler(state, node_name=None)
    datapath = Datapath()
    datapath.apply(compiler.full())
    p0, p1 = state.pods["ns1/p0"], state.pods["ns2/p1"]
    assert not datapath.connection("ns2/p1", p1.ips[0], "ns1/p0", p0.ips[0], "TCP", 80)
    assert not datapath.connection("ns1/p0", p0.ips[0], "ns2/p1", p1.ips[0], "TCP", 80)
    table = compiler.endpoint_policy("ns1/p0")
    assert table.ingress_isolated and table.egress_isolated and not table.entries
    assert compiler.endpoint_policy("ns2/p1").entries  # the Accept's own entries stay


@SETTINGS
@given(case_st())
def test_pods_arriving_under_cluster_policies(case: dict) -> None:
    """The cluster policies first, then the pods one by one (each a class that may be new,
    named by no rule yet: a table that spells out the identities no rule names must take it
    in): after each pod the incremental tables give the model's verdicts."""
    full_state = _state(case)
    state = ClusterState()
    for obj in (*full_state.namespaces.values(), *full_state.nodes.values(),
                *full_state.cluster_policies.values(), *full_state.policies.values()):
        state.upsert(obj)
    compiler = Compiler(state, node_name=None)
    datapath = Datapath()
    datapath.apply(compiler.full())
    for pod in full_state.pods.values():
        state.upsert(pod)
        datapath.apply(compiler.on_upsert(pod))
        want = _verdicts(state, None)
        wrong = _wrong(want, _verdicts(state, datapath))
        assert not wrong, f"after {pod.key}: {len(wrong)} differ: {wrong[:5]}"


def test_a_new_class_no_rule_names_gets_the_unnamed_verdict() -> None:
    """A Deny naming most identities becomes the wildcard's verdict, the identities no rule
    names get entries of their own; a pod of a new class that no rule names, arriving later,
    must get one too (EVERY_CLASS), not the Deny."""
    pod = {"sa": "sa1", "node": "n1", "host": False, "ports": []}
    case = {"namespaces": {"ns1": {"team": "a"}, "ns2": {"team": "b"}},
            "pods": [{**pod, "name": f"p{i}", "namespace": "ns1", "labels": {"app": app}}
                     for i, app in enumerate(["x", "y", "z"])],
            "cluster": [{"kind": "ClusterNetworkPolicy", "tier": "Admin", "name": "own-team",
                         "priority": 1, "subject": {"namespaces": {}},
                         "ingress": [{"action": "Deny", "name": "team-a", "ports": None,
                                      "peers": [{"namespaces": {"matchLabels": {"team": "a"}}}]}],
                         "egress": []}],
            "nps": []}
    state = _state(case)
    compiler = Compiler(state, node_name=None)
    datapath = Datapath()
    datapath.apply(compiler.full())
    table = compiler.endpoint_policy("ns1/p0")
    assert any(e.protocol == 0 and e.peer == 0 for e in table.denies)  # the wildcard denies
    newcomer = _state({**case, "pods": [*case["pods"], {**pod, "name": "p9", "namespace": "ns2",
                                                         "labels": {"app": "w"}}]}).pods["ns2/p9"]
    state.upsert(newcomer)
    datapath.apply(compiler.on_upsert(newcomer))
    p0 = state.pods["ns1/p0"]
    assert evaluate(state, "ns2/p9", "ns1/p0", 80, "TCP", 4).allowed
    assert datapath.connection("ns2/p9", newcomer.ips[0], "ns1/p0", p0.ips[0], "TCP", 80)
    assert not datapath.connection("ns1/p1", state.pods["ns1/p1"].ips[0], "ns1/p0", p0.ips[0],
                                   "TCP", 80)
