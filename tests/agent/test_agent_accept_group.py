"""`enforcer agent --accept-group` with the folder source: another group's NetworkPolicy is its
own object (kind NetworkPolicy.GROUP) next to networking.k8s.io's of the same name, enforced as
NAME.GROUP only when its group is accepted, and said (never silently dropped) otherwise."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from enforcer.agent.intake import Intake
from enforcer.sources.base import SourceEvent
from enforcer.sources.directory import DirectorySource

GROUP = "security.aqua.io"


def _policy(api: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": api, "kind": "NetworkPolicy",
            "metadata": {"namespace": "x", "name": "p"}, "spec": {"podSelector": {}, **spec}}


def _write(path: Path, *docs: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump_all(docs))
    os.replace(tmp, path)


def _feed(folder: Path, intake: Intake) -> tuple[DirectorySource, list[SourceEvent]]:
    source = DirectorySource(folder)
    events: list[SourceEvent] = []

    def emit(event: SourceEvent) -> None:
        events.append(event)
        intake.apply(event)

    source.scan(emit)
    return source, events


def test_accepted_group_is_enforced_beside_the_same_named_policy(tmp_path: Path) -> None:
    _write(tmp_path / "a-core.yaml", _policy("networking.k8s.io/v1", ingress=[{}]))
    _write(tmp_path / "b-aqua.yaml", _policy(f"{GROUP}/v1alpha1"))
    intake = Intake(lambda: "test", accept_groups=[GROUP])
    source, events = _feed(tmp_path, intake)
    assert sorted(e.kind or "" for e in events) == ["NetworkPolicy", f"NetworkPolicy.{GROUP}"]
    assert sorted(intake.state.policies) == ["x/p", f"x/p.{GROUP}"]
    assert intake.state.policies["x/p"].ingress  # the core one, untouched by the other
    # Deleting the other group's file removes its policy only.
    (tmp_path / "b-aqua.yaml").unlink()
    source.scan(lambda e: intake.apply(e))
    assert sorted(intake.state.policies) == ["x/p"]


def test_not_accepted_it_is_not_enforced_and_said_once(tmp_path: Path) -> None:
    _write(tmp_path / "aqua.yaml", _policy(f"{GROUP}/v1alpha1"))
    intake = Intake(lambda: "test")
    source, _ = _feed(tmp_path, intake)
    assert not intake.state.policies
    assert intake.not_enforced == {(f"NetworkPolicy.{GROUP}", "x", "p")}
    _write(tmp_path / "aqua.yaml", _policy(f"{GROUP}/v1alpha1", ingress=[{}]))
    source.scan(lambda e: intake.apply(e))
    assert not intake.state.policies and len(intake.not_enforced) == 1
    (tmp_path / "aqua.yaml").unlink()
    source.scan(lambda e: intake.apply(e))
    assert not intake.not_enforced
