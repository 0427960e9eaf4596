"""`enforcer lint`: each check on a manifest that has the mistake, output forms, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from enforcer.cli import main

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = str(REPO / "examples" / "three-tier")
ENFORCER = str(Path(sys.executable).parent / "enforcer")


def pod(ns: str, name: str, labels: dict, ip: str, ports: list[dict] | None = None) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"containers": [{"name": "c", "ports": ports or []}]},
        "status": {"phase": "Running", "podIPs": [{"ip": ip}]},
    }


def netpol(ns: str, name: str, **spec) -> dict:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"podSelector": {}, **spec},
    }


WEB = pod(
    "x",
    "web",
    {"app": "web", "part-of": "shop"},
    "10.0.0.1",
    [{"name": "http", "containerPort": 8080}],
)
DB = pod(
    "x", "db", {"app": "db", "part-of": "shop"}, "10.0.0.2", [{"name": "pg", "containerPort": 5432}]
)
DNS_RULE = {
    "to": [{"namespaceSelector": {}}],
    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
}


def lint_json(capsys, tmp_path: Path, docs: list[dict], *extra: str) -> tuple[int, list[dict]]:
    path = tmp_path / "in.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    code = main(["lint", str(path), "--output", "json", *extra])
    out, _ = capsys.readouterr()
    return code, json.loads(out)["findings"]


def checks(findings: list[dict]) -> set[str]:
    return {f["check"] for f in findings}


CASES = [
    # check id, level, manifests with exactly that mistake
    (
        "dns-not-allowed",
        "warning",
        [
            WEB,
            netpol(
                "x",
                "egress",
                policyTypes=["Egress"],
                egress=[{"to": [{"podSelector": {"matchLabels": {"app": "db"}}}]}],
            ),
        ],
    ),
    (
        "dns-not-allowed",
        "warning",
        [
            netpol(
                "x",
                "egress-no-pods",
                policyTypes=["Egress"],
                egress=[{"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}]}],
            )
        ],
    ),
    (
        "dns-tcp-only",
        "warning",
        [netpol("x", "dns", policyTypes=["Egress"], egress=[{"ports": [{"port": 53}]}])],
    ),
    (
        "selects-no-pod",
        "warning",
        [WEB, netpol("x", "typo", podSelector={"matchLabels": {"app": "wbe"}})],
    ),
    (
        "named-port-undeclared",
        "warning",
        [
            WEB,
            netpol(
                "x",
                "np",
                podSelector={"matchLabels": {"app": "web"}},
                ingress=[{"ports": [{"port": "https"}]}],
            ),
        ],
    ),
    (
        "named-port-protocol",
        "error",
        [
            WEB,
            netpol(
                "x",
                "np",
                podSelector={"matchLabels": {"app": "web"}},
                ingress=[{"ports": [{"port": "http", "protocol": "UDP"}]}],
            ),
        ],
    ),
    (
        "named-port-ipblock",
        "error",
        [
            netpol(
                "x",
                "np",
                policyTypes=["Egress"],
                egress=[
                    {"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}], "ports": [{"port": "https"}]},
                    DNS_RULE,
                ],
            )
        ],
    ),
    ("egress-only-isolates-ingress", "warning", [netpol("x", "eg", egress=[DNS_RULE])]),
    ("empty-egress-without-policytypes", "warning", [netpol("x", "deny-egress", egress=[])]),
    ("rules-ignored", "error", [netpol("x", "p", policyTypes=["Ingress"], egress=[DNS_RULE])]),
    (
        "broad-selector",
        "warning",
        [
            WEB,
            DB,
            netpol("x", "shop", podSelector={"matchLabels": {"part-of": "shop"}}, ingress=[{}]),
        ],
    ),
    (
        "or-instead-of-and",
        "warning",
        [
            netpol(
                "x",
                "p",
                ingress=[
                    {
                        "from": [
                            {"namespaceSelector": {"matchLabels": {"team": "a"}}},
                            {"podSelector": {"matchLabels": {"app": "web"}}},
                        ]
                    }
                ],
            )
        ],
    ),
    (
        "ipblock-overlaps-pods",
        "warning",
        [WEB, netpol("x", "p", ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.0/24"}}]}])],
    ),
    ("duplicate", "warning", [netpol("x", "p"), netpol("x", "p")]),
]


@pytest.mark.parametrize(("check", "level", "docs"), CASES, ids=[c[0] for c in CASES])
def test_each_check_finds_its_mistake(capsys, tmp_path, check, level, docs):
    code, findings = lint_json(capsys, tmp_path, docs, "--fail-on", "warning")
    found = [f for f in findings if f["check"] == check]
    assert found, findings
    assert found[0]["level"] == level and found[0]["origin"].endswith("in.yaml")
    assert found[0]["object"].startswith("NetworkPolicy x/")
    assert code == 1
    code, _ = lint_json(capsys, tmp_path, docs)  # default --fail-on error
    assert code == (1 if any(f["level"] == "error" for f in findings) else 0)


def test_dns_check_names_the_missing_protocol(capsys, tmp_path):
    udp_only = {"to": [{"namespaceSelector": {}}], "ports": [{"protocol": "UDP", "port": 53}]}
    _, findings = lint_json(
        capsys, tmp_path, [WEB, netpol("x", "e", policyTypes=["Egress"], egress=[udp_only])]
    )
    (dns,) = [f for f in findings if f["check"] == "dns-not-allowed"]
    assert "DNS over TCP is not allowed" in dns["message"] and "x/web" in dns["message"]


def test_fully_closed_egress_is_not_a_dns_mistake(capsys, tmp_path):
    code, findings = lint_json(
        capsys,
        tmp_path,
        [WEB, netpol("x", "deny", policyTypes=["Ingress", "Egress"])],
        "--fail-on",
        "warning",
    )
    assert "dns-not-allowed" not in checks(findings) and code == 0


def test_pod_cidr_option_finds_ipblocks_over_the_pod_network(capsys, tmp_path):
    docs = [
        netpol(
            "x",
            "p",
            policyTypes=["Egress"],
            egress=[
                {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]},
                {"to": [{"ipBlock": {"cidr": "10.244.0.0/24"}}]},
                DNS_RULE,
            ],
        )
    ]
    _, findings = lint_json(capsys, tmp_path, docs, "--pod-cidr", "10.244.0.0/16")
    (overlap,) = [f for f in findings if f["check"] == "ipblock-overlaps-pods"]
    assert overlap["field"] == "spec.egress[1].to[0].ipBlock"  # the except covers rule 0


def test_the_example_is_clean(capsys):
    assert main(["lint", EXAMPLE, "--fail-on", "warning"]) == 0
    out, _ = capsys.readouterr()
    assert "0 finding(s)" in out


def test_text_output_and_invalid_input(capsys, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        yaml.safe_dump_all(
            [
                netpol(
                    "x",
                    "bad",
                    ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}],
                ),
                netpol("x", "typo", egress=[]),
            ]
        )
    )
    code = main(["lint", str(path)])
    out, _ = capsys.readouterr()
    assert code == 2
    assert (
        f"{path}: error[invalid] NetworkPolicy x/bad spec.ingress[0].from[0].ipBlock: "
        "may not specify both ipBlock and another peer"
    ) in out
    code = main(["lint", str(path), "--output", "json"])
    findings = json.loads(capsys.readouterr()[0])["findings"]
    assert code == 2 and findings[0]["check"] == "invalid"


def test_console_script_exit_codes(tmp_path):
    warn = tmp_path / "warn.yaml"
    warn.write_text(yaml.safe_dump(netpol("x", "deny-egress", egress=[])))
    run = [ENFORCER, "lint", str(warn)]
    assert subprocess.run(run, capture_output=True).returncode == 0
    assert subprocess.run([*run, "--fail-on", "warning"], capture_output=True).returncode == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(netpol("x", "b", policyTypes=["Sideways"])))
    assert subprocess.run([ENFORCER, "lint", str(bad)], capture_output=True).returncode == 2


def test_the_mistakes_example_shows_each_kind_of_mistake(capsys):
    code = main(["lint", str(REPO / "examples" / "mistakes"), "--output", "json"])
    findings = json.loads(capsys.readouterr()[0])["findings"]
    assert code == 1  # it has an error-level finding
    assert checks(findings) == {
        "broad-selector",
        "dns-not-allowed",
        "dns-tcp-only",
        "egress-only-isolates-ingress",
        "empty-egress-without-policytypes",
        "named-port-protocol",
        "or-instead-of-and",
        "selects-no-pod",
    }
