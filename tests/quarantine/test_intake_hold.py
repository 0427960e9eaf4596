"""The agent's own quarantine in its intake: applied as a watch event carrying the annotation,
held over the source's versions of the pod until one carries a quarantine itself."""

from __future__ import annotations

from typing import Any

from enforcer.agent.intake import Intake
from enforcer.model.objects import QUARANTINE_ANNOTATION
from enforcer.sources.base import EventType, SourceEvent


def _pod(uid: str = "u1", quarantine: str | None = None, label: str = "a") -> dict[str, Any]:
    meta: dict[str, Any] = {"namespace": "x", "name": "a", "uid": uid, "labels": {"app": label}}
    if quarantine is not None:
        meta["annotations"] = {QUARANTINE_ANNOTATION: quarantine}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}]}}


def _apply(intake: Intake, obj: dict[str, Any], kind: EventType = EventType.MODIFIED) -> Any:
    return intake.apply(SourceEvent(kind, "Pod", obj))


def test_held_until_the_api_says_it_then_released_by_the_api() -> None:
    intake = Intake(lambda: "test")
    _apply(intake, _pod(), EventType.ADDED)
    change = intake.quarantine_locally("x/a", "auto: scan")
    assert change is not None and change.old.quarantine is None
    assert change.new.quarantine == "auto: scan" and intake.state.pods["x/a"].quarantine
    assert intake.quarantine_locally("x/a", "again") is None  # quarantined already
    assert intake.quarantine_locally("x/nope", "r") is None
    # A version from before the API write (a label change): still quarantined.
    _apply(intake, _pod(label="b"))
    pod = intake.state.pods["x/a"]
    assert pod.quarantine == "auto: scan" and pod.labels["app"] == "b"
    # The API's version with the annotation: the API holds it from now on.
    _apply(intake, _pod(quarantine="auto: scan"))
    assert intake.quarantines == {}
    # Released through the API.
    _apply(intake, _pod())
    assert intake.state.pods["x/a"].quarantine is None


def test_not_held_over_another_pod_of_that_name() -> None:
    intake = Intake(lambda: "test")
    _apply(intake, _pod(), EventType.ADDED)
    intake.quarantine_locally("x/a", "auto: spoofed source")
    _apply(intake, _pod(), EventType.DELETED)
    assert intake.quarantines == {}
    _apply(intake, _pod(uid="u2"), EventType.ADDED)
    assert intake.state.pods["x/a"].quarantine is None
    # And a new pod replacing it without a delete seen (a relist): its uid differs.
    intake.quarantine_locally("x/a", "r")
    _apply(intake, _pod(uid="u3"))
    assert intake.state.pods["x/a"].quarantine is None and intake.quarantines == {}


def test_the_kubernetes_source_keeps_the_annotation() -> None:
    """The source strips what policy does not read: the quarantine must survive it."""
    from enforcer.sources.strip import strip_object

    raw = _pod(quarantine="incident 42")
    raw["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = "{}"
    stripped = strip_object("Pod", raw)
    assert stripped["metadata"]["annotations"] == {QUARANTINE_ANNOTATION: "incident 42"}
