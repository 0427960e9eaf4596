"""`enforcer lint` reads StagedNetworkPolicies: an invalid one is an error exactly as the same
NetworkPolicy would be, naming its kind; a valid one is read, not ignored."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from enforcer.cli import main
from enforcer.model.objects import STAGED_POLICY_API

BAD_SPEC = {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/40"}}]}]}


def manifest(kind: str, api: str, name: str, spec: dict) -> dict:
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": "x"},
            "spec": spec}  # fmt: skip


def lint_json(capsys, path: Path) -> tuple[int, list[dict], str]:
    code = main(["lint", str(path), "--output", "json"])
    out, err = capsys.readouterr()
    return code, json.loads(out)["findings"], err


def test_an_invalid_staged_policy_is_the_networkpolicys_error_with_its_own_kind(capsys, tmp_path):
    as_policy, as_staged = tmp_path / "policy.yaml", tmp_path / "staged.yaml"
    as_policy.write_text(
        yaml.safe_dump(manifest("NetworkPolicy", "networking.k8s.io/v1", "bad", BAD_SPEC))
    )
    as_staged.write_text(
        yaml.safe_dump(manifest("StagedNetworkPolicy", STAGED_POLICY_API, "bad", BAD_SPEC))
    )
    code, (want,), _ = lint_json(capsys, as_policy)
    assert code == 2 and want["check"] == "invalid"
    code, (got,), _ = lint_json(capsys, as_staged)
    assert code == 2
    assert got == {
        **want,
        "object": "StagedNetworkPolicy x/bad",
        "origin": str(as_staged),
    }
    assert main(["lint", str(as_staged)]) == 2
    assert (
        f"{as_staged}: error[invalid] StagedNetworkPolicy x/bad "
        "spec.ingress[0].from[0].ipBlock.cidr: invalid CIDR '10.0.0.0/40'"
    ) in capsys.readouterr()[0]


def test_a_valid_staged_policy_is_read_without_findings(capsys, tmp_path):
    path = tmp_path / "staged.yaml"
    path.write_text(
        yaml.safe_dump(
            manifest("StagedNetworkPolicy", STAGED_POLICY_API, "ok", {"podSelector": {}})
        )
    )
    code, findings, err = lint_json(capsys, path)
    assert code == 0 and findings == [] and "not a kind we model" not in err
