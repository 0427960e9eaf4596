"""`advise --baseline`: a Baseline-tier ClusterNetworkPolicy per namespace, valid for the CRD's
schema, proven in the model with the tiers, and overridden by any NetworkPolicy."""

from __future__ import annotations

from typing import Any

import pytest

from enforcer.advise import AdviseOptions, advise
from enforcer.advise.advice import parse_baseline, parse_manifests
from enforcer.advise.baseline import LIST_MAX, RULES_MAX
from enforcer.advise.proof import with_policies
from enforcer.model import parse_clusterpolicy
from enforcer.model.clusterpolicy import ACCEPT, BASELINE, DENY
from enforcer.model.evaluate import BASELINE_STAGE, NETWORK_POLICY_STAGE, evaluate
from enforcer.model.parse import ValidationError
from enforcer.model.parse_clusterpolicy import parse_cluster_object

from .builders import (
    API,
    DB,
    DNS,
    WEB,
    both_sides,
    deployment,
    flow,
    namespace,
    netpol,
    shop,
    state_of,
)

BASELINE_ON = AdviseOptions(baseline=True)
RECORDS = [*both_sides(WEB[0], API[0], 8080), flow(WEB[1], DNS, 53, "UDP"),
           flow(API[0], DB, 5432), flow(API[0], "192.0.2.7", 443),
           flow("198.51.100.1", WEB[0], 8080, direction="ingress")]


def cnp(name: str, tier: str, priority: int, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": name},
            "spec": {"tier": tier, "priority": priority, **spec}}


def shop_subject() -> dict[str, Any]:
    return {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}}}


def test_one_valid_baseline_policy_per_namespace_ending_in_a_deny() -> None:
    advice = advise(state_of(shop()), RECORDS, BASELINE_ON)
    assert advice.policies == []
    assert [p.name for p in advice.baseline] == [
        "advised-baseline-data", "advised-baseline-kube-system", "advised-baseline-shop"]
    for parsed in parse_baseline(advice.baseline):
        assert (parsed.tier, parsed.priority) == (BASELINE, 1000)
        for rules in (parsed.ingress, parsed.egress):
            assert [r.action for r in rules][-1] == DENY
            assert {r.action for r in rules[:-1]} <= {ACCEPT}
    shop_policy = advice.baseline[-1]
    assert [r.manifest["name"] for r in shop_policy.egress or []] == [
        "accept-to-data", "accept-to-kube-system", "accept-to-shop",
        "accept-to-192.0.2.7/32", "deny-unobserved"]
    # DNS seen on UDP is accepted on TCP too; the address outside by its block.
    assert (shop_policy.egress or [])[1].ports == (("TCP", 53, 53), ("UDP", 53, 53))
    assert shop_policy.unnamed_ingress == 1  # from 198.51.100.1: no ingress rule can name it
    assert any("kube-system get a default too" in w for w in advice.warnings)


def test_observed_flows_stay_allowed_and_the_rest_is_denied_by_the_baseline() -> None:
    state = state_of(shop())
    advice = advise(state, RECORDS, BASELINE_ON)
    assert advice.proof.holds and advice.proof.denied_elsewhere == []
    after = with_policies(state, parse_baseline(advice.baseline))
    for src, dst, port, proto in [(WEB[0], API[0], 8080, "TCP"), (WEB[1], DNS, 53, "TCP"),
                                  (API[0], DB, 5432, "TCP"), (WEB[1], API[1], 8080, "TCP")]:
        assert evaluate(after, src, dst, port, proto).allowed, (src, dst, port)
    for src, dst, port in [(DB, API[0], 8080), (API[0], WEB[0], 5432), (DNS, WEB[0], 8080)]:
        verdict = evaluate(after, src, dst, port, "TCP")
        assert not verdict.allowed and evaluate(state, src, dst, port, "TCP").allowed
        sides = [s for s in (verdict.egress, verdict.ingress) if not s.allowed]
        assert all(s.decided_by == BASELINE_STAGE and s.baseline is not None
                   and s.baseline.rule_name == "deny-unobserved" for s in sides)


def test_a_networkpolicy_overrides_the_baseline_in_the_direction_it_isolates() -> None:
    state = state_of(shop())
    advice = advise(state, RECORDS, BASELINE_ON)
    baseline = parse_baseline(advice.baseline)
    after = with_policies(state, baseline)
    assert not evaluate(after, DB, API[0], 8080, "TCP").allowed  # data -> shop not observed
    teams = state_of([
        *shop(),
        netpol("data", "db-out", policyTypes=["Egress"], egress=[{}]),
        netpol("shop", "api-from-data", podSelector={"matchLabels": {"app": "api"}},
               policyTypes=["Ingress"], ingress=[{"from": [{"namespaceSelector": {
                   "matchLabels": {"kubernetes.io/metadata.name": "data"}}}]}]),
    ])
    with_teams = with_policies(teams, baseline)
    verdict = evaluate(with_teams, DB, API[0], 8080, "TCP")
    assert verdict.allowed
    assert verdict.egress.decided_by == verdict.ingress.decided_by == NETWORK_POLICY_STAGE
    # Overriding means deciding, both ways: the team's policy now refuses web -> api, which
    # the Baseline accepted (observed).
    refused = evaluate(with_teams, WEB[0], API[0], 8080, "TCP")
    assert not refused.allowed and refused.ingress.decided_by == NETWORK_POLICY_STAGE
    # Where the teams wrote nothing, the Baseline still decides.
    assert evaluate(with_teams, DB, WEB[0], 8080, "TCP").egress.decided_by == \
        NETWORK_POLICY_STAGE
    assert evaluate(with_teams, DB, WEB[0], 8080, "TCP").ingress.decided_by == BASELINE_STAGE


def test_what_it_newly_denies_equals_brute_force() -> None:
    docs = [*shop(), namespace("batch"),
            *deployment("batch", "worker", {"app": "worker"}, ["10.0.6.1", "10.0.6.2"])]
    state = state_of(docs)
    records = [*RECORDS, flow("batch/worker-5d8f7c9b6-0", DB, 5432)]
    advice = advise(state, records, AdviseOptions(baseline=True, namespaces=frozenset(
        {"shop", "data", "batch"})))
    after = with_policies(state, parse_baseline(advice.baseline))
    pods = state.endpoint_keys()
    lost = [(s, d, port, proto) for s in pods for d in pods if s != d
            for port, proto in advice.proof.ports
            if evaluate(state, s, d, port, proto).allowed
            and not evaluate(after, s, d, port, proto).allowed]
    assert (8080, "TCP") in advice.proof.ports and (5432, "TCP") in advice.proof.ports
    assert advice.proof.newly_denied == len(lost) > 0
    assert advice.proof.newly_denied_pod_pairs == len({(s, d) for s, d, *_ in lost})
    by_ns: dict[tuple[str, str], set[tuple[int, str]]] = {}
    for s, d, port, proto in lost:
        by_ns.setdefault((s.split("/")[0], d.split("/")[0]), set()).add((port, proto))
    assert advice.proof.newly_denied_namespaces == {k: tuple(sorted(v))
                                                    for k, v in by_ns.items()}
    assert [p.namespace for p in advice.baseline] == ["batch", "data", "shop"]


def hub(spokes: int, ports_each: int = 1, same_port: bool = False) -> tuple[Any, list[Any]]:
    """`spokes` namespaces with one pod each, each reaching hub/server on its own ports."""
    docs: list[dict[str, Any]] = [namespace("hub"), *deployment(
        "hub", "server", {"app": "server"}, ["10.1.0.1"])]
    records = []
    for i in range(spokes):
        docs += [namespace(f"spoke{i:02}"),
                 *deployment(f"spoke{i:02}", "client", {"app": "client"}, [f"10.2.{i}.1"])]
        for j in range(ports_each):
            port = 9000 if same_port else 10000 + i * ports_each + j
            records.append(flow(f"spoke{i:02}/client-5d8f7c9b6-0",
                                "hub/server-5d8f7c9b6-0", port))
    return state_of(docs), records


def test_limits_are_the_parsers() -> None:
    assert RULES_MAX == LIST_MAX == parse_clusterpolicy._LIST_MAX_V2
    rule = {"action": "Accept", "from": [{"namespaces": {}}]}
    parse_cluster_object(cnp("ok", "Baseline", 1, subject=shop_subject(),
                             ingress=[rule] * RULES_MAX))
    with pytest.raises(ValidationError, match="at most 25 rules"):
        parse_cluster_object(cnp("over", "Baseline", 1, subject=shop_subject(),
                                 ingress=[rule] * (RULES_MAX + 1)))


def test_namespaces_with_the_same_ports_share_one_rule() -> None:
    state, records = hub(40, same_port=True)
    advice = advise(state, records, AdviseOptions(baseline=True, namespaces=frozenset({"hub"})))
    (policy,) = advice.baseline
    accept, deny = policy.ingress
    assert deny.action == DENY and len(accept.namespaces) == 40
    (peer,) = accept.manifest["from"]
    assert peer["namespaces"]["matchExpressions"][0]["operator"] == "In"
    assert len(accept.manifest["name"]) <= 100 and accept.manifest["name"].endswith(",+30")
    assert not any("merged" in w for w in advice.warnings)
    assert advice.proof.holds


def test_too_many_rules_merge_namespaces_into_sets_and_say_so() -> None:
    state, records = hub(30)  # 30 namespaces on 30 different ports: 30 Accept rules needed
    advice = advise(state, records, AdviseOptions(baseline=True, namespaces=frozenset({"hub"})))
    (policy,) = advice.baseline
    assert len(policy.ingress) <= RULES_MAX and policy.ingress[-1].action == DENY
    assert any("the observations need 30 Accept rules, more than the 24" in w
               for w in advice.warnings)
    assert any("also accepted on TCP/" in w and "(merged, not observed)" in w
               for w in advice.warnings)
    parse_baseline(advice.baseline)  # valid: raises AdviceError if not
    assert advice.proof.holds
    # The merge widened the fewest combinations: 6 pairs of spokes share their two ports.
    assert sum(len(r.namespaces) == 2 for r in policy.ingress) == 6


def test_more_ports_than_the_rules_hold_become_ranges() -> None:
    state, records = hub(1, ports_each=700)
    advice = advise(state, records, AdviseOptions(baseline=True, namespaces=frozenset({"hub"})))
    (policy,) = advice.baseline
    assert len(policy.ingress) <= RULES_MAX
    assert any("joined into ranges" in w for w in advice.warnings)
    parsed = parse_baseline(advice.baseline)[0]
    assert all(len(r.ports or ()) <= LIST_MAX for r in parsed.ingress)
    assert advice.proof.holds


def test_ingress_only_leaves_egress_alone() -> None:
    state = state_of(shop())
    advice = advise(state, RECORDS, AdviseOptions(baseline=True, ingress_only=True))
    assert all("egress" not in p.manifest["spec"] and p.egress is None for p in advice.baseline)
    after = with_policies(state, parse_baseline(advice.baseline))
    verdict = evaluate(after, DB, API[0], 8080, "TCP")
    assert verdict.egress.allowed and not verdict.ingress.allowed
    assert advice.proof.holds


def test_an_admin_deny_is_said_not_blamed_on_the_advice() -> None:
    deny = cnp("no-web-to-api", "Admin", 10, subject=shop_subject(), ingress=[{
        "action": "Deny", "from": [{"pods": {"namespaceSelector": {}, "podSelector": {
            "matchLabels": {"app": "web"}}}}]}])
    state = state_of([*shop(), deny])
    records = [flow(WEB[0], API[0], 8080, verdict="audit"), flow(API[0], DB, 5432)]
    for options in (BASELINE_ON, AdviseOptions()):
        advice = advise(state, records, options)
        assert advice.proof.holds, options
        (refusal,) = advice.proof.denied_elsewhere
        assert "admin policy no-web-to-api (priority 10)" in refusal.describe()
    advice = advise(state, records)
    after = with_policies(state, parse_manifests(advice.policies))
    assert after.cluster_policies.keys() == state.cluster_policies.keys()


def test_an_existing_baseline_policy_after_the_default_is_said_to_be_shadowed() -> None:
    later = cnp("zz-team-default", "Baseline", 1000, subject=shop_subject(),
                ingress=[{"action": "Accept", "from": [{"namespaces": {}}]}])
    earlier = cnp("platform", "Baseline", 10, subject=shop_subject(),
                  ingress=[{"action": "Accept", "from": [{"namespaces": {}}]}])
    advice = advise(state_of([*shop(), later, earlier]), RECORDS, BASELINE_ON)
    shadowed = [w for w in advice.warnings if "shadowed" in w]
    assert shadowed == [
        "baseline policy zz-team-default (priority 1000) comes after advised-baseline-shop in "
        "the Baseline tier: their final Deny decides first for the namespaces they select, "
        "so it is shadowed there"]
