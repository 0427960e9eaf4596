"""The model twin of the lab acceptance: advise, apply, and every observed flow is allowed while
every unobserved pair between the observed workloads' pods is denied, on the observed ports.

Policies are per workload, so "observed" is at the workload level: one pod of web reaching one
pod of api allows every web pod to reach every api pod on that port. DNS (53) observed on one
protocol allows both. Workloads that took part in no flow get no policy and stay open.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from enforcer.advise import AdviseOptions, advise
from enforcer.advise.proof import with_policies
from enforcer.advise.render import render_yaml
from enforcer.analysis.explain import verdict_for
from enforcer.flows.record import FlowRecord
from enforcer.model.evaluate import evaluate
from enforcer.model.loader import load_text
from enforcer.model.workloads import workload_of

from .builders import both_sides, deployment, flow, namespace, shop, state_of

DOCS = [*shop(), namespace("batch"),
        *deployment("batch", "worker", {"app": "worker", "tier": "jobs"}, ["10.0.6.1"])]
STATE = state_of(DOCS)
PODS = STATE.endpoint_keys()
PORTS = [(8080, "TCP"), (5432, "TCP"), (53, "UDP"), (9000, "UDP")]
OUTSIDE = ["192.0.2.1", "198.51.100.20"]

pod_flows = st.tuples(st.sampled_from(PODS), st.sampled_from(PODS), st.sampled_from(PORTS),
                      st.sampled_from(["egress", "ingress", "both"]))
outside_flows = st.tuples(st.sampled_from(PODS), st.sampled_from(OUTSIDE),
                          st.sampled_from(PORTS), st.booleans())


def records_of(pairs: list, outside: list) -> list[FlowRecord]:
    records: list[FlowRecord] = []
    for src, dst, (port, protocol), side in pairs:
        if side == "both":
            records += both_sides(src, dst, port, protocol)
        else:
            records.append(flow(src, dst, port, protocol, side))
    for pod, address, (port, protocol), outbound in outside:
        src, dst = (pod, address) if outbound else (address, pod)
        records.append(flow(src, dst, port, protocol, "egress" if outbound else "ingress"))
    return records


@settings(max_examples=80, deadline=None)
@given(st.lists(pod_flows, min_size=1, max_size=8), st.lists(outside_flows, max_size=3),
       st.booleans())
def test_advice_allows_exactly_what_was_observed(pairs, outside, ingress_only) -> None:
    records = records_of(pairs, outside)
    advice = advise(STATE, records, AdviseOptions(ingress_only=ingress_only))
    assert advice.proof.holds
    # Apply what was printed, as the project's loader reads it.
    printed = load_text(render_yaml(advice), "advice.yaml")
    assert printed.errors == []
    after = with_policies(STATE, printed.objects)  # type: ignore[arg-type]

    for r in records:  # every observed flow, pod or address, stays allowed
        if r.source != r.destination:
            assert verdict_for(after, r.source, r.destination, r.port, r.protocol).allowed, r

    wl = {key: workload_of(STATE.pods[key]) for key in PODS}
    observed = set()
    for src, dst, (port, protocol), _ in pairs:
        if src == dst:
            continue
        protocols = ("UDP", "TCP") if port == 53 else (protocol,)
        observed.update((wl[src], wl[dst], port, p) for p in protocols)
    ingress = {p.workload for p in advice.policies if p.direction == "ingress"}
    egress = {p.workload for p in advice.policies if p.direction == "egress"}
    assert not egress or not ingress_only
    ports = set(advice.proof.ports)
    newly_denied = 0
    for src in PODS:
        for dst in PODS:
            if src == dst:
                continue
            for port, protocol in ports:
                expected = (wl[src], wl[dst], port, protocol) in observed or (
                    wl[src] not in egress and wl[dst] not in ingress)
                got = evaluate(after, src, dst, port, protocol).allowed
                assert got == expected, (src, dst, port, protocol)
                newly_denied += not got
    assert advice.proof.newly_denied == newly_denied  # nothing was denied before
