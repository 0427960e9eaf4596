"""The compiler's tables, looked up like the datapath does, agree with the model's verdicts;
incremental compilation ends where a fresh full compilation does; deltas rebuild the tables."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enforcer.compiler import Compiler
from enforcer.model.cluster import ClusterState, state_from

from .scenarios import cluster_st, model_verdicts
from .simulator import Datapath, verdicts

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def compiled(state: ClusterState) -> tuple[Compiler, Datapath]:
    compiler = Compiler(state, node_name=None)
    datapath = Datapath()
    datapath.apply(compiler.full())
    return compiler, datapath


def assert_agrees_with_model(state: ClusterState, datapath: Datapath) -> None:
    expected = model_verdicts(state)
    got = verdicts(datapath, expected)
    wrong = {probe: (expected[probe], got[probe]) for probe in expected if expected[probe] != got[probe]}
    assert not wrong, f"{len(wrong)} probes differ (model, datapath): {list(wrong.items())[:5]}"


@SETTINGS
@given(cluster_st())
def test_tables_agree_with_model(objects: list) -> None:
    state = state_from(objects)
    compiler, datapath = compiled(state)
    assert datapath.identities == dict(compiler.identities())
    assert_agrees_with_model(state, datapath)
