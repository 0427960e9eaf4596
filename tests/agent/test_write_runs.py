"""How the agent batches a write plan (pure): runs of one kind go to the datapath in one call,
never across plan_writes' phases."""

from __future__ import annotations

from ipaddress import ip_network

from enforcer.agent.runtime import _runs
from enforcer.compiler.write_plan import FlushConntrack, RemoveEndpoint, WriteIdentity, WritePolicy
from enforcer.datapath.types import EndpointPolicy

OPEN = EndpointPolicy.allow_all()


def _t(pod: str) -> WritePolicy:
    return WritePolicy(pod, OPEN, transitional=True)


def _f(pod: str) -> WritePolicy:
    return WritePolicy(pod, OPEN)


def _i(net: str, identity: int | None) -> WriteIdentity:
    return WriteIdentity(ip_network(net), identity)


def test_runs_of_one_kind_are_batched_in_the_plans_order() -> None:
    flush = FlushConntrack(frozenset())
    remove = [RemoveEndpoint("x/gone"), RemoveEndpoint("x/left")]
    plan = [_t("x/a"), _t("x/b"), _i("10.0.0.1/32", 5), _i("10.0.0.2/32", 6),
            _i("10.0.0.3/32", None), flush, _f("x/a"), _f("x/b"), *remove]
    assert list(_runs(plan)) == [
        [_t("x/a"), _t("x/b")],
        {ip_network("10.0.0.1/32"): 5, ip_network("10.0.0.2/32"): 6},
        {ip_network("10.0.0.3/32"): None},  # deletes never merged with upserts
        flush,
        [_f("x/a"), _f("x/b")],
        remove,
    ]


def test_transition_and_final_tables_are_never_one_batch() -> None:
    # With no identity write between them the phases still follow one another in two calls.
    assert list(_runs([_t("x/a"), _f("x/b"), _f("x/a")])) == [
        [_t("x/a")],
        [_f("x/b"), _f("x/a")],
    ]
