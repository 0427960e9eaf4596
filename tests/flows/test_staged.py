"""StagedView: what staged policies would change for a recorded flow, and which of them.

Hand-written cases name the expected policies; a property test checks every flow of random
small clusters against a preview built from scratch (the enforced manifests with the staged
ones merged in by namespace/name), and that the policies named are enough on their own to
make the change.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enforcer.analysis.inputs import planned_state
from enforcer.flows.record import FlowRecord, StagedVerdict, read_file
from enforcer.flows.staged import StagedView, judged_side, staged_verdict
from enforcer.model.evaluate import evaluate_ip
from enforcer.model.loader import load_paths
from enforcer.model.objects import STAGED_POLICY_API, NetworkPolicy
from enforcer.model.parse import parse_object, parse_staged_policy
from tests.model.netpol_builders import ns, pod, policy, state_of

REPO = Path(__file__).resolve().parents[2]
OUTSIDE = "192.0.2.9"


def staged(*docs: dict[str, Any]) -> list[NetworkPolicy]:
    out = []
    for doc in docs:
        raw = {**copy.deepcopy(doc), "apiVersion": STAGED_POLICY_API, "kind": "StagedNetworkPolicy"}
        parsed = parse_staged_policy(raw)
        assert parsed is not None
        out.append(parsed)
    return out


def flow(src: str, dst: str, direction: str, verdict: str = "allowed", **kw: Any) -> FlowRecord:
    return FlowRecord(
        source=src,
        destination=dst,
        port=kw.pop("port", 80),
        protocol=kw.pop("protocol", "TCP"),
        direction=direction,
        verdict=verdict,
        **kw,
    )


APP = [
    ns("x"),
    ns("y"),
    pod("x", "a", {"app": "a"}, ["10.1.0.1"]),
    pod("x", "b", {"app": "b"}, ["10.1.0.2"]),
    pod("y", "c", {"app": "c"}, ["10.1.0.3"]),
]
B_FROM_A = policy(
    "x",
    "b-ingress",
    podSelector={"matchLabels": {"app": "b"}},
    ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}], "ports": [{"port": 80}]}],
)


def test_a_staged_default_deny_would_deny_what_flows_now() -> None:
    state = state_of(*APP)
    view = StagedView(state, staged(policy("x", "default-deny", policyTypes=["Ingress"])))
    assert view.verdict(flow("x/a", "x/b", "ingress")) == StagedVerdict(
        "would-deny", ("x/default-deny",)
    )
    assert view.verdict(flow("y/c", "x/a", "ingress")) == StagedVerdict(
        "would-deny", ("x/default-deny",)
    )
    # Egress is not what it isolates; a pod reaching itself is never denied.
    assert view.verdict(flow("x/a", "x/b", "egress")) is None
    assert view.verdict(flow("x/a", "x/a", "ingress")) is None
    # Outside the staged policy's namespace nothing changes.
    assert view.verdict(flow("x/a", "y/c", "ingress")) is None


def test_a_staged_policy_adding_an_allow_beside_an_enforced_deny_changes_nothing() -> None:
    """Policies are additive, but a staged policy isolates too: beside an enforced default
    deny, allowing x/a -> x/b is new (would-allow); y/c -> x/b stays denied (None)."""
    state = state_of(*APP, policy("x", "deny", policyTypes=["Ingress"]))
    view = StagedView(state, staged(B_FROM_A))
    assert view.verdict(flow("x/a", "x/b", "ingress", "denied")) == StagedVerdict(
        "would-allow", ("x/b-ingress",)
    )
    assert view.verdict(flow("y/c", "x/b", "ingress", "denied")) is None


def test_a_staged_replacement_that_narrows_an_enforced_policy_would_deny() -> None:
    state = state_of(*APP, B_FROM_A)
    narrower = copy.deepcopy(B_FROM_A)
    narrower["spec"]["ingress"][0]["ports"] = [{"port": 8080}]
    view = StagedView(state, staged(narrower))
    assert view.verdict(flow("x/a", "x/b", "ingress")) == StagedVerdict(
        "would-deny", ("x/b-ingress",)
    )
    assert view.verdict(flow("x/a", "x/b", "ingress", port=8080, verdict="denied")) == (
        StagedVerdict("would-allow", ("x/b-ingress",))
    )
    assert view.verdict(flow("y/c", "x/b", "ingress", "denied")) is None  # denied either way


def test_a_staged_replacement_that_stops_isolating_would_allow_naming_it() -> None:
    state = state_of(*APP, policy("x", "lockdown", policyTypes=["Ingress", "Egress"]))
    egress_only = policy("x", "lockdown", policyTypes=["Egress"])
    view = StagedView(state, staged(egress_only))
    assert view.verdict(flow("y/c", "x/b", "ingress", "denied")) == StagedVerdict(
        "would-allow", ("x/lockdown",)
    )
    assert view.verdict(flow("x/b", "y/c", "egress", "denied")) is None  # still isolated


def test_only_the_staged_policies_that_cause_a_deny_are_named() -> None:
    """b is allowed by b-ingress; a staged narrowing of it denies. A second staged policy
    isolating b, identical to an enforced one, did not cause it and is not named."""
    deny_b = policy("x", "deny-b", podSelector={"matchLabels": {"app": "b"}})
    state = state_of(*APP, B_FROM_A, deny_b)
    narrower = copy.deepcopy(B_FROM_A)
    narrower["spec"]["ingress"][0]["from"] = [{"podSelector": {"matchLabels": {"app": "z"}}}]
    view = StagedView(state, staged(narrower, deny_b))
    assert view.verdict(flow("x/a", "x/b", "ingress")) == StagedVerdict(
        "would-deny", ("x/b-ingress",)
    )


def test_addresses_outside_the_cluster_and_ip_fallback() -> None:
    state = state_of(*APP)
    egress_to_web = policy(
        "x",
        "a-egress",
        podSelector={"matchLabels": {"app": "a"}},
        policyTypes=["Egress"],
        egress=[{"to": [{"ipBlock": {"cidr": "192.0.2.0/28"}}]}],
    )
    view = StagedView(state, staged(egress_to_web))
    assert view.verdict(flow("x/a", OUTSIDE, "egress")) is None  # inside the ipBlock
    assert view.verdict(flow("x/a", "203.0.113.1", "egress")) == StagedVerdict(
        "would-deny", ("x/a-egress",)
    )
    # The pod's address stands for it; a renamed pod is found by its address.
    assert view.verdict(flow("10.1.0.1", "x/b", "egress")) == StagedVerdict(
        "would-deny", ("x/a-egress",)
    )
    renamed = flow("x/a-7d9f", "x/b", "egress", source_ip="10.1.0.1")
    assert view.verdict(renamed) == StagedVerdict("would-deny", ("x/a-egress",))
    # Unknown: a pod neither named nor at a known address; or no pod at all.
    assert view.verdict(flow("x/gone", "x/b", "egress", source_ip="10.9.9.9")) is None
    assert view.verdict(flow("x/gone", "x/b", "egress")) is None
    assert view.verdict(flow(OUTSIDE, "203.0.113.1", "egress")) is None


def test_no_staged_policies_change_nothing_and_the_one_off_function_agrees() -> None:
    state = state_of(*APP)
    assert StagedView(state, []).verdict(flow("x/a", "x/b", "ingress")) is None
    deny = staged(policy("x", "deny"))
    record = flow("x/a", "x/b", "ingress")
    assert staged_verdict(state, deny, record) == StagedView(state, deny).verdict(record)


def test_the_view_follows_changes_of_the_enforced_state() -> None:
    state = state_of(*APP)
    view = StagedView(state, staged(B_FROM_A))
    record = flow("x/a", "x/b", "ingress", port=81)
    assert view.verdict(record) == StagedVerdict("would-deny", ("x/b-ingress",))
    # The same deny, now enforced: nothing would change any more.
    (enforced,) = staged(policy("x", "b-ingress", podSelector={"matchLabels": {"app": "b"}}))
    state.upsert(enforced)
    assert view.verdict(record) is None
    assert "x/b-ingress" in view.preview.policies and "x/b-ingress" in state.policies
    # A new pod is known to the preview at once.
    new_pod = parse_object(pod("x", "d", {"app": "a"}, ["10.1.0.4"]))
    assert new_pod is not None
    state.upsert(new_pod)
    assert view.verdict(flow("x/d", "x/b", "ingress", port=81, verdict="denied")) is None
    assert "x/d" in view.preview.pods


def test_the_enforced_state_is_never_touched() -> None:
    state = state_of(*APP, B_FROM_A)
    generation, policies = state.generation, dict(state.policies)
    view = StagedView(state, staged(policy("x", "b-ingress"), policy("y", "deny")))
    for src in ("x/a", "x/b", "y/c"):
        for dst in ("x/a", "x/b", "y/c"):
            for direction in ("ingress", "egress"):
                view.verdict(flow(src, dst, direction))
    assert state.generation == generation and dict(state.policies) == policies


# --- the property: every flow of random small clusters -------------------------------------

LABELS = st.sampled_from(["a", "b", "c"])
SELECTOR = st.one_of(st.just({}), LABELS.map(lambda v: {"matchLabels": {"app": v}}))
PEER = st.one_of(
    SELECTOR.map(lambda s: {"podSelector": s}),
    st.sampled_from(["x", "y"]).map(
        lambda n: {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": n}}}
    ),
    st.just({"ipBlock": {"cidr": "192.0.2.0/28"}}),
)
RULE = st.fixed_dictionaries(
    {},
    optional={
        "peers": st.lists(PEER, min_size=1, max_size=2),
        "ports": st.lists(st.sampled_from([80, 81]).map(lambda p: {"port": p}), max_size=1),
    },
)


@st.composite
def policy_st(draw: Any) -> dict[str, Any]:
    namespace, name = draw(st.sampled_from(["x", "y"])), draw(st.sampled_from(["p", "q"]))
    types = draw(st.sampled_from([["Ingress"], ["Egress"], ["Ingress", "Egress"]]))

    def rules(peer_key: str) -> list[dict[str, Any]]:
        out = []
        for rule in draw(st.lists(RULE, max_size=2)):
            item = {"ports": rule["ports"]} if rule.get("ports") else {}
            if "peers" in rule:
                item[peer_key] = rule["peers"]
            out.append(item)
        return out

    return policy(
        namespace,
        name,
        podSelector=draw(SELECTOR),
        policyTypes=types,
        ingress=rules("from"),
        egress=rules("to"),
    )


PODS = [
    ns("x"),
    ns("y"),
    pod("x", "a", {"app": "a"}, ["10.2.0.1"]),
    pod("x", "b", {"app": "b"}, ["10.2.0.2"]),
    pod("y", "c", {"app": "c"}, ["10.2.0.3"]),
    pod("y", "d", {"app": "a"}, ["10.2.0.4"]),
]
ENDS = ["x/a", "x/b", "y/c", "y/d", OUTSIDE, "203.0.113.1"]


def _by_key(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{d['metadata']['namespace']}/{d['metadata']['name']}": d for d in docs}


def _allowed(docs: list[dict[str, Any]], record: FlowRecord) -> bool:
    """The judged side's verdict in a state built from scratch from these manifests."""
    state = state_of(*PODS, *docs)
    pod_end = record.source if record.direction == "egress" else record.destination
    other = record.destination if record.direction == "egress" else record.source
    if other in state.pods:
        other = str(state.pods[other].ips[0])
    verdict = evaluate_ip(state, pod_end, other, record.port, "TCP", record.direction.capitalize())
    return judged_side(verdict, record.direction)[0]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(policy_st(), max_size=3), st.lists(policy_st(), min_size=1, max_size=2))
def test_every_flow_matches_a_preview_built_from_scratch(
    enforced: list[dict[str, Any]], staged_docs: list[dict[str, Any]]
) -> None:
    enforced_by_key = _by_key(enforced)
    staged_by_key = _by_key(staged_docs)
    view = StagedView(state_of(*PODS, *enforced_by_key.values()), staged(*staged_by_key.values()))
    for src in ENDS:
        for dst in ENDS:
            for direction in ("egress", "ingress"):
                pod_end = src if direction == "egress" else dst
                if pod_end not in view.state.pods:
                    continue
                for port in (80, 81):
                    record = flow(src, dst, direction, port=port)
                    before = _allowed(list(enforced_by_key.values()), record)
                    after = _allowed(list({**enforced_by_key, **staged_by_key}.values()), record)
                    got = view.verdict(record)
                    if before == after:
                        assert got is None, (record, got)
                        continue
                    assert got is not None, record
                    assert got.verdict == ("would-allow" if after else "would-deny")
                    # The policies named are staged ones, and on their own make the change.
                    assert got.policies and set(got.policies) <= set(staged_by_key)
                    alone = {**enforced_by_key, **{k: staged_by_key[k] for k in got.policies}}
                    assert _allowed(list(alone.values()), record) == after, (record, got)


def test_the_staged_example_would_deny_the_recorded_tcp_dns_flow() -> None:
    """examples/staged narrows frontend's DNS egress to UDP: of the recorded flows, only the
    TCP/53 one changes, and the staged allow-dns is named."""
    result = load_paths([REPO / "examples" / "three-tier", REPO / "examples" / "staged"])
    assert not result.errors and [p.key for p in result.staged] == ["frontend/allow-dns"]
    view = StagedView(planned_state(result), result.staged)
    flows = read_file(REPO / "examples" / "staged" / "flows.jsonl", strict=True).records
    changes = {(r.destination, r.protocol, r.direction): view.verdict(r) for r in flows}
    assert {k: v for k, v in changes.items() if v is not None} == {
        ("kube-system/coredns", "TCP", "egress"): StagedVerdict(
            "would-deny", ("frontend/allow-dns",)
        )
    }
