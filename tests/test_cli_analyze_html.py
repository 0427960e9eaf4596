"""`enforcer analyze --output html`: one self-contained page, every pair of every port with its
verdict and its --explain text. (Opened in a real browser in tests/console/test_page_browser.py.)"""

from __future__ import annotations

import json
import re
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import yaml

from enforcer.analysis.explain import explain_text
from enforcer.analysis.inputs import load_for_command, planned_state
from enforcer.cli import main
from tests.lab import upstream

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = str(REPO / "examples" / "three-tier")


class Page(HTMLParser):
    """The cells, script tags and every URL-bearing attribute of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[dict[str, str]] = []
        self.cell_text: list[str] = []
        self.scripts: list[dict[str, str | None]] = []
        self.links: list[str] = []
        self.sections: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "td" and "data-explain" in a:
            self.cells.append({k: v or "" for k, v in a.items()})
            self._in_cell = True
            self.cell_text.append("")
        if tag == "script":
            self.scripts.append(a)
        if tag == "h2" and a.get("id"):
            self.sections.append(a["id"] or "")
        for name in ("src", "href", "action", "poster", "data"):
            if a.get(name):
                self.links.append(a[name] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.cell_text[-1] += data


def analyze(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["analyze", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    return page


def assert_self_contained(text: str, page: Page) -> None:
    assert not re.search(r"https?://", text), "the page must make no external request"
    assert all(s.get("src") is None for s in page.scripts), "no <script src>"
    assert "<link" not in text and "@import" not in text and "url(" not in text
    assert all(link.startswith("#") for link in page.links), page.links


def test_three_tier_page_is_self_contained_with_every_pair_and_its_explanation(capsys):
    code, out, err = analyze(capsys, EXAMPLE, "--output", "html")
    assert code == 0, err
    assert out.startswith("<!DOCTYPE html>")
    page = parse(out)
    assert_self_contained(out, page)

    code, js, _ = analyze(capsys, EXAMPLE, "--output", "json")
    docs = json.loads(js)
    assert page.sections == [f"port-{d['port']}-{d['protocol'].lower()}" for d in docs]

    state = planned_state(load_for_command([EXAMPLE], False)[0])
    cells = iter(zip(page.cells, page.cell_text, strict=True))
    for doc in docs:
        for src, row in doc["matrix"].items():
            for dst, allowed in row.items():
                cell, text = next(cells)
                assert (cell["data-from"], cell["data-to"]) == (src, dst)
                assert text == ("OK" if allowed else "--")
                assert ("ok" if allowed else "deny") in cell["class"].split()
                want = explain_text(state, src, dst, doc["port"], doc["protocol"])
                assert cell["data-explain"] == want
                assert ("ALLOWED" if allowed else "DENIED") in want.splitlines()[0]
    assert next(cells, None) is None, "a cell for a pair the matrix does not have"
    # The explain text is in the file as such (escaped once), e.g. a denial naming its policy.
    assert "DENIED here" in unescape(out)


def test_one_port_and_the_upstream_cluster_with_a_policy(capsys, tmp_path):
    docs = [
        *upstream.cluster(),
        upstream.policy("deny", "x", {"podSelector": {}, "policyTypes": ["Ingress"]}),
    ]
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    code, out, err = analyze(capsys, str(path), "--port", "80", "--output", "html")
    assert code == 0, err
    page = parse(out)
    assert_self_contained(out, page)
    assert page.sections == ["port-80-tcp"]
    pods = [f"{n}/{p}" for n in upstream.NAMESPACES for p in upstream.PODS]
    assert len(page.cells) == len(pods) ** 2
    verdict = {
        (c["data-from"], c["data-to"]): t for c, t in zip(page.cells, page.cell_text, strict=True)
    }
    assert set(verdict) == {(s, d) for s in pods for d in pods}
    assert verdict[("y/a", "x/b")] == "--" and verdict[("x/b", "y/a")] == "OK"
    denied = next(c for c in page.cells if (c["data-from"], c["data-to"]) == ("y/a", "x/b"))
    assert "isolated by x/deny" in denied["data-explain"]


def test_staged_is_noted_and_flows_or_explain_are_refused(capsys):
    staged = str(REPO / "examples" / "staged")
    code, out, err = analyze(capsys, EXAMPLE, staged, "--staged", "--output", "html")
    assert code == 0, err
    assert "as if applied" in out
    code, _, err = analyze(
        capsys, EXAMPLE, "--explain", "frontend/web", "backend/api", "--output", "html"
    )
    assert code == 2 and "--output html" in err
    flows = str(REPO / "examples" / "staged" / "flows.jsonl")
    code, _, err = analyze(capsys, EXAMPLE, "--flows", flows, "--output", "html")
    assert code == 2 and "--output html" in err


def test_names_are_escaped(capsys, tmp_path):
    pod = upstream.pod("x", "a")
    pod["metadata"]["labels"] = {"pod": "a"}
    ns = upstream.namespace("x")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump_all([ns, pod]))
    # The source list is shown in the title; a path with markup must not become markup.
    odd = tmp_path / "<b>odd"
    odd.mkdir()
    (odd / "c.yaml").write_text(yaml.safe_dump_all([ns, pod]))
    code, out, err = analyze(capsys, str(odd), "--port", "80", "--output", "html")
    assert code == 0, err
    assert "<b>odd" not in out and "&lt;b&gt;odd" in out


def test_through_services_each_cell_explains_every_route_on_its_target_port(capsys, tmp_path):
    from tests.test_cli_analyze_services import EXAMPLE as SERVICES

    path = tmp_path / "svc.yaml"
    path.write_text(yaml.safe_dump_all(SERVICES))
    code, out, err = analyze(capsys, str(path), "--via", "service", "--output", "html")
    assert code == 0, err
    page = parse(out)
    assert_self_contained(out, page)
    assert "through Services" in out
    cells = {(c["data-from"], c["data-to"]): (c, t) for c, t in zip(page.cells, page.cell_text,
                                                                    strict=True)}
    assert set(cells) == {(s, d) for s in ("x/b", "x/c", "x/client") for d in ("x/b", "x/c")}
    state = planned_state(load_for_command([str(path)], False)[0])
    cell, text = cells[("x/client", "x/c")]
    assert text == "--"
    assert cell["data-explain"] == "through x/web:80 -> 9090:\n" + explain_text(
        state, "x/client", "x/c", 9090, "TCP"
    )
    cell, text = cells[("x/client", "x/b")]
    assert text == "OK" and "through x/web:80 -> 8080:\n" in cell["data-explain"]
