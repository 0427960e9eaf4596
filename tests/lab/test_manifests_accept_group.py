"""The lab's reading of another group's NetworkPolicy (no kernel): an error naming the way to
read it, or, accepted, the networking.k8s.io/v1 NetworkPolicy NAME.GROUP its agents enforce."""

from __future__ import annotations

from pathlib import Path

import yaml

from enforcer.lab import manifests as mf
from enforcer.model.loader import parse_object
from enforcer.model.objects import NetworkPolicy
from tests.test_cli_accept_group import GROUP, NAME, seed_manifest


def test_the_seed_is_refused_unless_its_group_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "aqua.yaml"
    path.write_text(seed_manifest())
    objects, errors = mf.read_raw([path])
    assert objects == []
    assert errors == [
        f"{path}: NetworkPolicy default/{NAME} of {GROUP}/v1alpha1 not read: another API group "
        f"than networking.k8s.io (--accept-group {GROUP} reads it as a NetworkPolicy)"
    ]
    (obj,), errors = mf.read_raw([path], [GROUP])
    assert errors == []
    assert obj["apiVersion"] == "networking.k8s.io/v1"
    assert mf.object_id(obj) == ("NetworkPolicy", "default", f"{NAME}.{GROUP}")
    policy = parse_object(obj)  # what the lab's agents read from its folder
    assert isinstance(policy, NetworkPolicy) and policy.key == f"default/{NAME}.{GROUP}"
    assert policy == parse_object(yaml.safe_load(seed_manifest()), "f", {GROUP})
