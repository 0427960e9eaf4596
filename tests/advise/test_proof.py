"""The proof's count of newly denied pairs: by classes of alike pods, equal to brute force."""

from __future__ import annotations

from enforcer.advise import advise
from enforcer.advise.advice import parse_manifests
from enforcer.advise.proof import pod_classes, with_policies
from enforcer.model.evaluate import evaluate

from .builders import API, WEB, flow, netpol, shop, state_of


def brute_force(docs: list, records: list) -> tuple[int, int, int]:
    before = state_of(docs)
    advice = advise(before, records)
    after = with_policies(before, parse_manifests(advice.policies))
    pods = before.endpoint_keys()
    lost = [(s, d, port, proto) for s in pods for d in pods if s != d
            for port, proto in advice.proof.ports
            if evaluate(before, s, d, port, proto).allowed
            and not evaluate(after, s, d, port, proto).allowed]
    return advice.proof.newly_denied, len(lost), len({(s, d) for s, d, *_ in lost})


def test_replicas_an_ipblock_tells_apart_are_counted_apart() -> None:
    # An existing policy lets only web's first replica (10.0.1.1) reach api on 9000.
    docs = [*shop(), netpol("shop", "api-from-one", podSelector={"matchLabels": {"app": "api"}},
                            ingress=[{"from": [{"ipBlock": {"cidr": "10.0.1.1/32"}}]}])]
    state = state_of(docs)
    assert [WEB[0]] in pod_classes(state) and [WEB[1]] in pod_classes(state)
    records = [flow(WEB[0], API[0], 8080), flow(API[1], WEB[1], 9000, "UDP")]
    counted, combinations, pairs = brute_force(docs, records)
    assert counted == combinations > 0
    advice = advise(state, records)
    assert advice.proof.newly_denied_pod_pairs == pairs


def test_replicas_alike_are_one_class() -> None:
    classes = pod_classes(state_of(shop()))
    assert WEB in classes and API in classes
