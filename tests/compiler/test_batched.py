"""Compiler.on_changes: a burst of events compiled as one step (the agent's watch-storm
coalescing) ends where event-by-event and full compilation do, and its write plan is safe
between the batch's two ends."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from enforcer.model.cluster import ClusterState, state_from
from enforcer.model.objects import ModelObject, kind_of

from .scenarios import cluster_st, model_verdicts, probes
from .simulator import verdicts
from .test_differential import (
    SETTINGS,
    _blocks_in_use,
    _events,
    _safe_during_writes,
    assert_agrees_with_model,
    compiled,
)


def _apply_to_state(state: ClusterState, action: str, obj: ModelObject) -> None:
    if action == "upsert":
        state.upsert(obj)
    else:
        state.remove(kind_of(obj), getattr(obj, "namespace", None), obj.name)


# Few examples: CI's budget (the differential tests cover the compiler's steps at length;
# 400 examples of this one passed when it was written).
@settings(SETTINGS, max_examples=25)
@given(st.data())
def test_a_batch_compiles_to_what_its_events_do(data: st.DataObject) -> None:
    state = state_from(data.draw(cluster_st()))
    compiler, datapath = compiled(state)
    serial = 0
    for _ in range(data.draw(st.integers(1, 3), label="batches")):
        probes_before = {p for p, _ in probes(state)}
        blocks_before = _blocks_in_use(state)
        last: dict[tuple[str, str | None, str], tuple[str, ModelObject]] = {}
        for _ in range(data.draw(st.integers(1, 6), label="events in the batch")):
            serial += 1
            for action, obj in _events(data, state, serial):
                _apply_to_state(state, action, obj)
                last[(kind_of(obj), getattr(obj, "namespace", None), obj.name)] = (action, obj)
        changes = [(None, obj) if action == "upsert" else (obj, None)
                   for action, obj in last.values()]
        delta = compiler.on_changes(changes)
        common = probes_before & {p for p, _ in probes(state)}
        _safe_during_writes(datapath, delta, common, blocks_before != _blocks_in_use(state))
        datapath.apply(delta)
        assert datapath.identities == dict(compiler.identities())
        assert datapath.policies == dict(compiler.policies())
        assert_agrees_with_model(state, datapath)
    _, fresh = compiled(state)
    expected = verdicts(fresh, model_verdicts(state))
    assert verdicts(datapath, expected) == expected
