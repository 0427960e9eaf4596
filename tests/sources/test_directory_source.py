"""DirectorySource: a folder of manifests as a stream of object events."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml

from enforcer.sources.base import EventType, source_from_spec
from enforcer.sources.directory import DirectorySource
from tests.sources.builders import namespace, pod, policy
from tests.sources.conftest import RunSource
from tests.sources.recorder import Recorder, wait_until

INTERVAL = 0.02


def write(path: Path, *docs: object) -> None:
    """Write atomically (temporary hidden name, then rename), as users are told to."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump_all(docs))
    os.replace(tmp, path)


def settle(rec: Recorder, polls: int = 5) -> int:
    """Let a few polls pass; return the event count (for 'nothing happened' checks)."""
    time.sleep(INTERVAL * polls)
    return len(rec.events)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "manifests"
    d.mkdir()
    return d


def start(run_source: RunSource, folder: Path) -> tuple[DirectorySource, Recorder]:
    source = DirectorySource(folder, interval=INTERVAL)
    rec = run_source(source)
    rec.wait(lambda r: r.synced >= 1, what="SYNCED")
    return source, rec


def test_initial_load_reads_every_format_then_synced(folder: Path, run_source: RunSource) -> None:
    write(folder / "ns.yaml", namespace("prod", {"team": "a"}), namespace("dev"))
    write(folder / "apps" / "web.yml", pod("web-0", "prod", {"app": "web"}, "10.0.0.1"))
    (folder / "apps" / "list.json").write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "PodList",  # typed list: items without kind, as kubectl prints them
                "items": [
                    {
                        k: v
                        for k, v in pod("db-0", "prod").items()
                        if k not in ("kind", "apiVersion")
                    }
                ],
            }
        )
    )
    write(
        folder / "policies.yaml",
        {"apiVersion": "v1", "kind": "List", "items": [policy("deny", "prod")]},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "skipped"}},
    )
    nons = pod("no-namespace")
    del nons["metadata"]["namespace"]
    write(folder / "z-nons.yaml", nons)
    write(folder / ".hidden.yaml", pod("hidden", "prod"))
    (folder / "notes.txt").write_text("kind: Pod\nmetadata: {name: txt}\n")

    source, rec = start(run_source, folder)
    events, state = rec.snapshot()
    assert [e.type for e in events[:-1]] == [EventType.ADDED] * 6
    assert events[-1].type is EventType.SYNCED
    assert set(state) == {
        ("Namespace", None, "prod"),
        ("Namespace", None, "dev"),
        ("Pod", "prod", "web-0"),
        ("Pod", "prod", "db-0"),
        ("Pod", "default", "no-namespace"),  # defaulted, as kubectl apply would
        ("NetworkPolicy", "prod", "deny"),
    }
    assert state[("Pod", "prod", "db-0")]["kind"] == "Pod"
    # Namespaces come before the pods that live in them, policies last.
    kinds = [e.kind for e in events[:-1]]
    assert kinds.index("NetworkPolicy") > max(i for i, k in enumerate(kinds) if k == "Pod")
    assert source.healthy and source.file_errors == {}


def test_create_modify_delete_files(folder: Path, run_source: RunSource) -> None:
    write(folder / "ns.yaml", namespace("prod"))
    _, rec = start(run_source, folder)

    write(folder / "web.yaml", pod("web-0", "prod", {"app": "web"}, "10.0.0.1"))
    rec.wait(lambda r: ("Pod", "prod", "web-0") in r.state, what="ADDED")
    assert rec.events[-1].type is EventType.ADDED

    write(folder / "web.yaml", pod("web-0", "prod", {"app": "web", "v": "2"}, "10.0.0.1"))
    rec.wait(lambda r: (r.labels("Pod", "web-0", "prod") or {}).get("v") == "2", what="MODIFIED")
    assert rec.events[-1].type is EventType.MODIFIED

    # Same content rewritten (new mtime): no event.
    n = len(rec.events)
    write(folder / "web.yaml", pod("web-0", "prod", {"app": "web", "v": "2"}, "10.0.0.1"))
    assert settle(rec) == n

    # One pod of a two-pod file removed: only that one is DELETED.
    write(folder / "two.yaml", pod("a", "prod"), pod("b", "prod"))
    rec.wait(lambda r: ("Pod", "prod", "b") in r.state)
    write(folder / "two.yaml", pod("a", "prod"))
    rec.wait(lambda r: ("Pod", "prod", "b") not in r.state, what="b DELETED")
    assert ("Pod", "prod", "a") in rec.state

    (folder / "web.yaml").unlink()
    rec.wait(lambda r: ("Pod", "prod", "web-0") not in r.state, what="file removed")
    last = rec.events[-1]
    assert last.type is EventType.DELETED and last.obj is not None
    assert last.obj["metadata"]["labels"] == {"app": "web", "v": "2"}  # the last known object


def test_broken_yaml_keeps_previous_objects(folder: Path, run_source: RunSource) -> None:
    write(folder / "p.yaml", pod("web-0", "prod", {"app": "web"}), policy("deny", "prod"))
    source, rec = start(run_source, folder)
    n = len(rec.events)

    (folder / "p.yaml").write_text("kind: Pod\nmetadata: {name: [unclosed\n")
    wait_until(lambda: "p.yaml" in source.file_errors, what="error recorded")
    assert settle(rec) == n  # nothing deleted, nothing half-applied
    assert ("Pod", "prod", "web-0") in rec.state and ("NetworkPolicy", "prod", "deny") in rec.state
    assert source.healthy  # bad input is not an unavailable source

    write(folder / "p.yaml", pod("web-0", "prod", {"app": "web2"}))
    rec.wait(lambda r: ("NetworkPolicy", "prod", "deny") not in r.state, what="fixed file")
    assert rec.labels("Pod", "web-0", "prod") == {"app": "web2"}
    assert source.file_errors == {}


def test_partially_written_file_applies_only_when_complete(
    folder: Path, run_source: RunSource
) -> None:
    write(folder / "p.yaml", pod("old", "prod"))
    _, rec = start(run_source, folder)
    n = len(rec.events)
    full = yaml.safe_dump_all([pod("new-a", "prod", {"x": "1"}), pod("new-b", "prod")])
    cut = full.index("labels:") + len("labels:\n    x: '")  # mid-document, mid-string
    with open(folder / "p.yaml", "w") as f:
        f.write(full[:cut])
        f.flush()
        assert settle(rec) == n  # the half file does not parse: the old pod stays
        assert set(rec.state) == {("Pod", "prod", "old")}
        f.write(full[cut:])
    rec.wait(lambda r: ("Pod", "prod", "new-b") in r.state, what="completed file")
    assert set(rec.state) == {("Pod", "prod", "new-a"), ("Pod", "prod", "new-b")}


def test_rename_into_place_is_one_change(folder: Path, run_source: RunSource) -> None:
    _, rec = start(run_source, folder)
    tmp = folder / ".incoming.yaml"
    tmp.write_text(yaml.safe_dump_all([pod(f"p{i}", "prod") for i in range(50)]))
    assert settle(rec) == 1  # hidden: not read
    os.rename(tmp, folder / "pods.yaml")
    rec.wait(lambda r: len(r.state) == 50, what="all 50")
    revisions = {e.resource_version for e in rec.events[1:]}
    assert len(revisions) == 1  # all 50 pods arrived in one scan


def test_same_object_in_two_files_last_file_wins(folder: Path, run_source: RunSource) -> None:
    write(folder / "a.yaml", pod("web", "prod", {"from": "a"}))
    write(folder / "b.yaml", pod("web", "prod", {"from": "b"}))
    _, rec = start(run_source, folder)
    assert rec.labels("Pod", "web", "prod") == {"from": "b"}
    assert len(rec.of("Pod")) == 1

    (folder / "b.yaml").unlink()  # the earlier file's version takes over
    rec.wait(lambda r: r.labels("Pod", "web", "prod") == {"from": "a"}, what="a wins")
    assert rec.events[-1].type is EventType.MODIFIED
    (folder / "a.yaml").unlink()
    rec.wait(lambda r: ("Pod", "prod", "web") not in r.state, what="deleted")


def test_missing_folder_is_unhealthy_until_it_appears(
    tmp_path: Path, run_source: RunSource
) -> None:
    folder = tmp_path / "later"
    source = DirectorySource(folder, interval=INTERVAL)
    rec = run_source(source)
    time.sleep(INTERVAL * 5)
    assert not source.healthy and rec.synced == 0
    write(folder / "p.yaml", pod("web", "prod"))
    rec.wait(lambda r: r.synced == 1, what="SYNCED once the folder exists")
    assert source.healthy and ("Pod", "prod", "web") in rec.state

    # The whole folder vanishing is an outage, not a deletion of everything.
    n = len(rec.events)
    os.rename(folder, tmp_path / "gone")
    wait_until(lambda: not source.healthy, what="unhealthy")
    assert settle(rec) == n
    assert ("Pod", "prod", "web") in rec.state
    # It comes back with other content: the state converges to it.
    write(folder / "q.yaml", pod("other", "prod"))
    rec.wait(lambda r: set(r.state) == {("Pod", "prod", "other")}, what="converged after return")
    assert source.healthy


def test_change_is_seen_within_a_few_polls(folder: Path, run_source: RunSource) -> None:
    source = DirectorySource(folder, interval=0.1)  # the default interval
    rec = run_source(source)
    rec.wait(lambda r: r.synced == 1)
    delays = []
    for i in range(5):
        began = time.monotonic()
        write(folder / f"p{i}.yaml", pod(f"p{i}", "prod"))
        rec.wait(lambda r, i=i: ("Pod", "prod", f"p{i}") in r.state)
        delays.append(time.monotonic() - began)
    delays.sort()
    assert delays[2] < 0.25 and delays[-1] < 0.5, delays  # median about one poll


def test_inotify_wakes_the_poll_for_a_renamed_in_file(folder: Path, run_source: RunSource) -> None:
    """With a poll of seconds, a file renamed into the folder (or a subfolder) is still seen
    at once: inotify wakes the scan."""
    (folder / "sub").mkdir()
    source = DirectorySource(folder, interval=2.0)
    rec = run_source(source)
    rec.wait(lambda r: r.synced == 1)
    time.sleep(0.1)  # past the first scan, which sets the watches
    delays = []
    for i in range(4):
        began = time.monotonic()
        write(folder / ("sub" if i % 2 else ".") / f"p{i}.yaml", pod(f"p{i}", "prod"))
        rec.wait(lambda r, i=i: ("Pod", "prod", f"p{i}") in r.state, timeout=5.0)
        delays.append(time.monotonic() - began)
    assert max(delays) < 0.5, delays


def test_source_from_spec_dir(folder: Path) -> None:
    source = source_from_spec(f"dir:{folder}", kubeconfig=None, node_name=None)
    assert isinstance(source, DirectorySource)
    assert source.describe() == f"dir:{folder}"
    with pytest.raises(ValueError):
        source_from_spec("nonsense", kubeconfig=None, node_name=None)


def test_events_parse_to_what_the_model_loader_reads() -> None:
    """The agent parses source events with parse_object; over the example cluster that must
    give exactly the objects `enforcer analyze` loads from the same files."""
    from enforcer.model.loader import load_paths, parse_object

    folder = Path(__file__).resolve().parents[2] / "examples" / "three-tier"
    rec = Recorder()
    DirectorySource(folder).scan(rec)
    parsed = {parse_object(e.obj) for e in rec.events if e.obj is not None}
    parsed.discard(None)
    loaded = load_paths([folder])
    assert not loaded.errors
    assert parsed == set(loaded.objects) and len(parsed) > 5


def test_mounted_configmap_symlink_swap(folder: Path, run_source: RunSource) -> None:
    """The kubelet's layout: files are symlinks through `..data` to a timestamped folder, and
    an update swaps `..data` atomically to a new folder."""

    def version(tag: str, labels: dict[str, str]) -> None:
        d = folder / f"..2026_{tag}"
        d.mkdir()
        (d / "pods.yaml").write_text(yaml.safe_dump(pod("web", "prod", labels)))
        (folder / "..data_tmp").symlink_to(d.name)
        os.replace(folder / "..data_tmp", folder / "..data")

    version("a", {"v": "1"})
    (folder / "pods.yaml").symlink_to("..data/pods.yaml")
    (folder / "loop").symlink_to(".", target_is_directory=True)  # a loop must not hang a scan
    _, rec = start(run_source, folder)
    assert rec.labels("Pod", "web", "prod") == {"v": "1"}
    version("b", {"v": "2"})
    rec.wait(lambda r: r.labels("Pod", "web", "prod") == {"v": "2"}, what="swap seen")
    assert [e.type for e in rec.of("Pod")] == [EventType.ADDED, EventType.MODIFIED]


def test_staged_policies_are_delivered_from_files(folder: Path, run_source: RunSource) -> None:
    """StagedNetworkPolicy files: delivered like NetworkPolicies (namespace defaulted), and
    a same-named NetworkPolicy is another object."""
    staged = {**policy("deny", "prod"), "apiVersion": "enforcer.dev/v1alpha1",
              "kind": "StagedNetworkPolicy"}
    nons = {**staged, "metadata": {"name": "nons"}}
    write(folder / "policies.yaml", policy("deny", "prod"), staged, nons)
    _, rec = start(run_source, folder)
    _, state = rec.snapshot()
    assert state[("StagedNetworkPolicy", "prod", "deny")]["spec"] == staged["spec"]
    assert ("StagedNetworkPolicy", "default", "nons") in state
    assert ("NetworkPolicy", "prod", "deny") in state
    write(folder / "policies.yaml", policy("deny", "prod"))
    rec.wait(lambda r: ("StagedNetworkPolicy", "prod", "deny") not in r.state, what="deleted")
    assert rec.of("StagedNetworkPolicy", EventType.DELETED)
