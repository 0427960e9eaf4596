"""Records -> observations: one per flow however often recorded; what is learned and what not."""

from __future__ import annotations

from enforcer.advise.observations import learn
from enforcer.model.workloads import Workload

from .builders import API, DB, DNS, WEB, both_sides, deployment, flow, shop, state_of


def test_a_flow_seen_at_both_ends_is_one_observation_counted_once() -> None:
    learned = learn(state_of(shop()), both_sides(WEB[0], API[0], 8080, count=7))
    (o,) = learned.observations
    assert (o.source.name, o.destination.name, o.port, o.count) == (WEB[0], API[0], 8080, 7)
    assert o.source.workload == Workload("shop", "Deployment", "web")


def test_denied_flows_are_not_learned_unless_asked() -> None:
    records = [flow(WEB[0], DB, 5432, verdict="denied", reason="policy_denied")]
    learned = learn(state_of(shop()), records)
    assert learned.observations == []
    assert any("1 denied flow(s) not learned" in n for n in learned.notes)
    assert len(learn(state_of(shop()), records, include_denied=True).observations) == 1


def test_denials_that_are_not_about_policy_are_never_learned() -> None:
    records = [flow(WEB[0], DB, 5432, verdict="denied", reason="spoofed_source")]
    assert learn(state_of(shop()), records, include_denied=True).observations == []


def test_a_flow_one_side_only_denied_did_not_work_and_is_not_learned() -> None:
    records = [flow(WEB[0], DB, 5432, direction="egress"),
               flow(WEB[0], DB, 5432, direction="ingress", verdict="denied")]
    assert learn(state_of(shop()), records).observations == []


def test_audit_flows_are_learned() -> None:
    (o,) = learn(state_of(shop()), [flow(WEB[0], DB, 5432, verdict="audit")]).observations
    assert o.verdicts == frozenset({"audit"})


def test_unknown_pods_are_reported_and_skipped() -> None:
    learned = learn(state_of(shop()), [flow("shop/ghost", DB, 5432), flow(WEB[0], DB, 5432)])
    assert len(learned.observations) == 1
    assert "unknown pod shop/ghost: 1 flow(s) skipped" in learned.notes


def test_a_pod_that_is_gone_is_taken_as_its_workload() -> None:
    learned = learn(state_of(shop()),
                    [flow("shop/web-5d8f7c9b6-old", DB, 5432, source_workload="shop/web")])
    (o,) = learned.observations
    assert o.source.workload == Workload("shop", "Deployment", "web")
    assert o.source.pods == tuple(WEB)


def test_an_address_of_a_pod_is_that_pod_and_others_are_outside() -> None:
    learned = learn(state_of(shop()), [flow(WEB[0], "10.0.3.1", 5432),
                                       flow(WEB[0], "192.0.2.1", 443)])
    inside, outside = sorted(learned.observations, key=lambda o: o.port, reverse=True)
    assert inside.destination.pods == (DB,)
    assert outside.destination.workload is None and str(outside.destination.address) == "192.0.2.1"


def test_icmp_and_self_traffic_teach_nothing() -> None:
    learned = learn(state_of(shop()), [flow(WEB[0], API[0], 0, "ICMP"),
                                       flow(WEB[0], WEB[0], 8080)])
    assert learned.observations == []
    assert any("ICMP" in n for n in learned.notes)


def test_denied_dns_is_remembered_for_a_warning() -> None:
    learned = learn(state_of(shop()), [flow(WEB[0], DNS, 53, "UDP", verdict="denied")])
    assert learned.denied_dns == {Workload("shop", "Deployment", "web"): [f"{DNS} UDP/53"]}


def test_a_mid_rollout_deployment_is_one_workload() -> None:
    docs = [*shop(), *deployment("shop", "web", {"app": "web"}, ["10.0.1.9"],
                                 template_hash="7f6d5c4b3")]
    (o,) = learn(state_of(docs), [flow("shop/web-7f6d5c4b3-0", API[0], 8080)]).observations
    assert o.source.workload == Workload("shop", "Deployment", "web")
