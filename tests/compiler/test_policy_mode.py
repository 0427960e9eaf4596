"""Audit mode in the compiler: a pod's annotation wins over its namespace's, which wins over
the node's default; a change of mode is a new generation for exactly the pods it touches."""

from __future__ import annotations

from dataclasses import replace

from enforcer.compiler import Compiler
from enforcer.model.cluster import ClusterState
from enforcer.model.objects import Namespace, Pod

from .builders import ns, pod, policy


def _compiled(default: str, ns_mode: str | None, pod_mode: str | None) -> bool:
    namespace = ns("shop")
    assert isinstance(namespace, Namespace)
    p = pod("shop", "web", ["10.0.0.1"])
    assert isinstance(p, Pod)
    state = ClusterState()
    for o in (replace(namespace, policy_mode=ns_mode), replace(p, policy_mode=pod_mode),
              policy("shop", "deny", policyTypes=["Ingress"])):
        state.upsert(o)
    compiler = Compiler(state, None, policy_mode=default)
    compiler.full()
    return compiler.endpoint_policy("shop/web").audit


def test_the_most_specific_mode_wins() -> None:
    assert not _compiled("enforce", None, None)
    assert _compiled("audit", None, None)
    assert _compiled("enforce", "audit", None)
    assert not _compiled("audit", "enforce", None)
    assert not _compiled("enforce", "audit", "enforce")
    assert _compiled("enforce", "enforce", "audit")


def test_a_namespace_switching_mode_rewrites_its_pods_only() -> None:
    state = ClusterState()
    for o in (ns("shop"), ns("other"), pod("shop", "web", ["10.0.0.1"]),
              pod("other", "db", ["10.0.0.2"]), policy("shop", "deny", policyTypes=["Ingress"])):
        state.upsert(o)
    compiler = Compiler(state, None)
    compiler.full()
    audited = replace(state.namespace_identity("shop"), policy_mode="audit")
    state.upsert(audited)
    delta = compiler.on_upsert(audited)
    assert set(delta.endpoints) == {"shop/web"} and delta.endpoints["shop/web"].audit
    # The tables themselves do not change: audit only changes what a deny does.
    assert delta.endpoints["shop/web"].entries == frozenset()
    again = compiler.on_upsert(audited)
    assert not again.endpoints


def test_the_annotation_is_read_from_manifests_and_kept_by_the_agents_stripping() -> None:
    from enforcer.model.objects import POLICY_MODE_ANNOTATION
    from enforcer.model.parse import parse_object
    from enforcer.sources.strip import strip_object

    for value, mode in (("audit", "audit"), ("enforce", "enforce"), ("typo", "enforce")):
        raw = {"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": "shop", "annotations": {POLICY_MODE_ANNOTATION: value,
                                                            "other": "dropped"}}}
        stripped = strip_object("Namespace", raw)
        assert stripped["metadata"]["annotations"] == {POLICY_MODE_ANNOTATION: value}
        parsed = parse_object(stripped)
        assert isinstance(parsed, Namespace) and parsed.policy_mode == mode


def test_a_namespace_relabel_that_keeps_its_mode_rewrites_nothing_for_it() -> None:
    state = ClusterState()
    for o in (ns("shop"), pod("shop", "web", ["10.0.0.1"]),
              policy("shop", "deny", policyTypes=["Ingress"])):
        state.upsert(o)
    compiler = Compiler(state, None)
    compiler.full()
    relabelled = replace(state.namespace_identity("shop"), labels={"team": "a"})
    state.upsert(relabelled)
    assert not compiler.on_upsert(relabelled).endpoints
    audited = replace(relabelled, policy_mode="audit")
    state.upsert(audited)
    assert compiler.on_upsert(audited).endpoints["shop/web"].audit
    state.remove("Namespace", None, "shop")
    assert not compiler.on_remove(audited).endpoints["shop/web"].audit
