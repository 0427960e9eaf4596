"""Another group's NetworkPolicy: not read unless its group is accepted; then read with the v1
schema and validation, named NAME.GROUP so it never collides with networking.k8s.io's."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from netpol_builders import policy

from enforcer.model.groups import check_groups, source_kind
from enforcer.model.loader import ValidationError, load_text, parse_object
from enforcer.model.objects import NetworkPolicy

GROUP = "security.aqua.io"


def aqua(name: str = "p", version: str = "v1alpha1", **spec: Any) -> dict[str, Any]:
    return {**policy("x", name, **spec), "apiVersion": f"{GROUP}/{version}"}


def test_not_read_by_default_and_reported_with_its_group() -> None:
    assert parse_object(aqua()) is None
    result = load_text(yaml.safe_dump(aqua()), "f.yaml")
    (ignored,) = result.ignored
    assert (ignored.origin, ignored.kind, ignored.api_version, ignored.namespace,
            ignored.name) == ("f.yaml", "NetworkPolicy", f"{GROUP}/v1alpha1", "x", "p")
    assert ignored.accept_group == GROUP and f"--accept-group {GROUP}" in ignored.reason()
    assert not result.objects and not result.empty


def test_any_version_of_an_accepted_group_is_read_as_name_dot_group() -> None:
    for version in ("v1alpha1", "v1"):
        obj = parse_object(aqua(version=version, podSelector={"matchLabels": {"a": "b"}},
                                ingress=[{}]), "f", {GROUP})
        assert isinstance(obj, NetworkPolicy)
        assert obj.key == f"x/p.{GROUP}"
        assert obj.pod_selector.match_labels == {"a": "b"} and len(obj.ingress) == 1
    assert parse_object(aqua(), "f", {"other.example.com"}) is None


def test_both_same_named_policies_are_kept() -> None:
    docs = [policy("x", "p", ingress=[{}]), aqua()]
    result = load_text(yaml.safe_dump_all(docs), "f.yaml", accept_groups={GROUP})
    assert sorted(o.key for o in result.objects if isinstance(o, NetworkPolicy)) == [
        "x/p", f"x/p.{GROUP}"]
    assert not result.ignored


def test_validation_names_the_object_with_its_api_version() -> None:
    bad = aqua(ingress=[{"ports": [{"port": 80, "endPort": 70}]}])
    with pytest.raises(ValidationError) as err:
        parse_object(bad, "f.yaml", {GROUP})
    assert err.value.field == "spec.ingress[0].ports[0].endPort"
    assert str(err.value).startswith(f"f.yaml: NetworkPolicy ({GROUP}/v1alpha1) x/p: field")
    too_long = aqua(name="a" * 240)
    with pytest.raises(ValidationError, match="longer than 253"):
        parse_object(too_long, "f.yaml", {GROUP})


def test_other_kinds_of_the_group_and_the_core_group_are_never_read() -> None:
    other = {**aqua(), "kind": "RuntimePolicy"}
    assert parse_object(other, "f", {GROUP}) is None
    assert parse_object({**policy("x", "p"), "apiVersion": "v1"}, "f", {GROUP}) is None


def test_sources_track_it_under_its_own_kind() -> None:
    assert source_kind("NetworkPolicy", aqua()) == f"NetworkPolicy.{GROUP}"
    assert source_kind("NetworkPolicy", policy("x", "p")) == "NetworkPolicy"
    assert source_kind("Pod", {"apiVersion": "v1", "kind": "Pod"}) == "Pod"


def test_check_groups() -> None:
    assert check_groups([GROUP, "crd.projectcalico.org"]) is None
    assert check_groups(["networking.k8s.io"]) is not None
    assert check_groups([f"{GROUP}/v1"]) is not None
    assert check_groups(["nodot"]) is not None
