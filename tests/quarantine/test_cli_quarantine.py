"""`enforcer quarantine` against the fake API server (the real kubernetes client over HTTP):
the annotation set and removed by a merge patch, an Event recorded on the pod, and one-line
errors for what is wrong."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from enforcer import cli
from enforcer.model.objects import QUARANTINE_ANNOTATION
from tests.fakeapi import FakeKubeAPI


def _pod(ns: str, name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": ns, "name": name, "labels": {"app": name},
                     "annotations": {"team": "web", **(annotations or {})}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]},
        "status": {"phase": "Running", "podIP": "10.0.0.7", "podIPs": [{"ip": "10.0.0.7"}]},
    }


def _kubeconfig(path: Path, server: str, context: str = "c") -> Path:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": server}},
                     {"name": "nowhere", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": context, "context": {"cluster": "fake", "user": "u"}},
                     {"name": "down", "context": {"cluster": "nowhere", "user": "u"}}],
        "current-context": context}))
    return path


@pytest.fixture
def api() -> Iterator[FakeKubeAPI]:
    server = FakeKubeAPI().start()
    server.apply(_pod("shop", "web-0"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def kubeconfig(api: FakeKubeAPI, tmp_path: Path) -> Path:
    return _kubeconfig(tmp_path / "kubeconfig", api.url)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["quarantine", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _events(api: FakeKubeAPI) -> list[dict[str, Any]]:
    return sorted(api.objects("Event"), key=lambda e: e["metadata"]["name"])


def test_quarantine_then_release(api: FakeKubeAPI, kubeconfig: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    pod_uid = api.get("Pod", "web-0", "shop")["metadata"]["uid"]  # type: ignore[index]
    code, out, err = _run(capsys, "shop/web-0", "--reason", "beaconing, SEC-112",
                          "--kubeconfig", str(kubeconfig))
    assert (code, out, err) == (0, "pod/shop/web-0 quarantined\n", "")
    pod = api.get("Pod", "web-0", "shop")
    assert pod is not None
    # The annotation, and nothing else touched (a merge patch, not a replace).
    assert pod["metadata"]["annotations"] == {"team": "web",
                                              QUARANTINE_ANNOTATION: "beaconing, SEC-112"}
    assert pod["metadata"]["labels"] == {"app": "web-0"} and pod["status"]["podIP"] == "10.0.0.7"
    patches = [r for r in api.requests if r.method == "PATCH"]
    assert [r.path for r in patches] == ["/api/v1/namespaces/shop/pods/web-0"]
    (event,) = _events(api)
    assert event["metadata"]["namespace"] == "shop"
    assert event["metadata"]["name"].startswith("web-0.")
    assert event["involvedObject"] == {"apiVersion": "v1", "kind": "Pod", "namespace": "shop",
                                       "name": "web-0", "uid": pod_uid}
    assert event["reason"] == "Quarantined" and event["type"] == "Warning"
    assert "beaconing, SEC-112" in event["message"]
    assert event["source"] == {"component": "enforcer"}
    assert event["count"] == 1 and event["firstTimestamp"].startswith("20")

    code, out, err = _run(capsys, "release", "shop/web-0", "--kubeconfig", str(kubeconfig))
    assert (code, out, err) == (0, "pod/shop/web-0 released\n", "")
    pod = api.get("Pod", "web-0", "shop")
    assert pod is not None and pod["metadata"]["annotations"] == {"team": "web"}
    released = _events(api)[1]
    assert released["reason"] == "QuarantineReleased" and released["type"] == "Normal"
    assert released["source"] == {"component": "enforcer"}

    # Releasing a pod that is not quarantined changes nothing and says so.
    code, out, _ = _run(capsys, "release", "shop/web-0", "--kubeconfig", str(kubeconfig))
    assert (code, out) == (0, "pod/shop/web-0 was not quarantined\n")
    assert len(_events(api)) == 2 and len([r for r in api.requests if r.method == "PATCH"]) == 2


def test_context_flag_picks_the_cluster(api: FakeKubeAPI, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    config = _kubeconfig(tmp_path / "kc", api.url)
    code, _, err = _run(capsys, "shop/web-0", "--reason", "r", "--kubeconfig", str(config),
                        "--context", "down")
    assert code == 1 and err.startswith("error: cannot reach the Kubernetes API")
    assert "127.0.0.1:9" in err and len(err.splitlines()) == 1
    assert QUARANTINE_ANNOTATION not in api.get("Pod", "web-0", "shop")["metadata"]["annotations"]  # type: ignore[index]
    code, out, _ = _run(capsys, "shop/web-0", "--reason", "r", "--kubeconfig", str(config),
                        "--context", "c")
    assert (code, out) == (0, "pod/shop/web-0 quarantined\n")
    code, _, err = _run(capsys, "shop/web-0", "--reason", "r", "--kubeconfig", str(config),
                        "--context", "nope")
    assert code == 2 and "nope" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(("argv", "code", "says"), [
    (["shop/nope", "--reason", "r"], 1, "error: pod shop/nope not found (API server http://"),
    (["shop", "--reason", "r"], 2, "error: 'shop': give the pod as NAMESPACE/NAME"),
    (["shop/web-0/x", "--reason", "r"], 2, "give the pod as NAMESPACE/NAME"),
    (["Shop/web-0", "--reason", "r"], 2, "namespace 'Shop' is not a valid name"),
    (["shop/web-0"], 2, "error: --reason TEXT is required to quarantine a pod"),
    (["shop/web-0", "--reason", "  "], 2, "error: --reason TEXT is required"),
    (["shop/web-0", "--reason", "a\nb"], 2, "error: --reason: one line"),
    (["release", "shop/nope"], 1, "error: pod shop/nope not found"),
    (["release"], 2, "error: 'release': give the pod as NAMESPACE/NAME"),
    (["release", "a/b", "c/d"], 2, "error: expected one pod"),
])
def test_bad_input_is_one_line(api: FakeKubeAPI, kubeconfig: Path,
                               capsys: pytest.CaptureFixture[str],
                               argv: list[str], code: int, says: str) -> None:
    got, out, err = _run(capsys, *argv, "--kubeconfig", str(kubeconfig))
    assert got == code and out == ""
    assert says in err and len(err.splitlines()) == 1, err
    assert [r for r in api.requests if r.method in ("PATCH", "POST")] == []
    assert api.objects("Event") == []


def test_refused_patch_is_said(api: FakeKubeAPI, kubeconfig: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    api.fail_requests(503)  # up but refusing (GETs: the pod cannot even be read)
    code, _, err = _run(capsys, "shop/web-0", "--reason", "r", "--kubeconfig", str(kubeconfig))
    assert code == 1 and err.startswith("error: reading pod shop/web-0: 503")


def test_the_command_line_as_a_process(api: FakeKubeAPI, kubeconfig: Path,
                                       tmp_path: Path) -> None:
    """The installed entry point, its help and its exit codes."""
    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "enforcer.cli", "quarantine", *argv],
                              capture_output=True, text=True, timeout=60)

    helped = run("--help")
    assert helped.returncode == 0
    assert "enforcer quarantine [release] NS/POD" in helped.stdout
    assert "kubelet probes" in helped.stdout and "--context" in helped.stdout
    done = run("shop/web-0", "--reason", "scan", "--kubeconfig", str(kubeconfig))
    assert (done.returncode, done.stdout) == (0, "pod/shop/web-0 quarantined\n")
    missing = run("shop/web-0", "--reason", "r", "--kubeconfig", str(tmp_path / "none"))
    assert missing.returncode == 2
    assert missing.stderr == f"error: --kubeconfig {tmp_path / 'none'}: no such file\n"
