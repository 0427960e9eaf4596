"""The console's page in a real browser: Debian's Chromium, headless, driven by Playwright
(launched with executable_path: it never downloads a browser). A two-node lab runs the
three-tier app with its policies and a staged one; `lab up` starts the lab's console. Real
packets make the flows; the page must show them within seconds, filter them as the API does,
show a denied flow as denied with its policy, map the workloads, and show in the policy view
what the model says. The analyze HTML report is opened in the same browser.

Screenshots go to docs/console/ (the README shows them), or to $ENFORCER_SCREENSHOT_DIR.

No skip: without Chromium or Playwright these tests fail (the import below, or the launch).
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from urllib.request import urlopen

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from bench.console_page import CHROMIUM, CHROMIUM_ARGS  # one launch, bench and tests
from enforcer.analysis.explain import explain_text, verdict_for
from enforcer.analysis.inputs import load_for_command, planned_state
from enforcer.analysis.matrix import reachability
from enforcer.cli import main
from enforcer.lab import lab
from enforcer.lab.probe import ProbeEndpoint, answered_by, probe_pair
from tests.lab.outside import outside_host

REPO = Path(__file__).resolve().parents[2]
THREE_TIER = REPO / "examples" / "three-tier"
STAGED = REPO / "examples" / "staged"
SHOTS = Path(os.environ.get("ENFORCER_SCREENSHOT_DIR") or REPO / "docs" / "console")
OUTSIDE_PORT = 9443  # a server on a host outside the cluster (on the lab's fabric)
WAIT_MS = 10_000  # how long the page may take to show what the API has

# The app's traffic: (from, to, port, protocol, allowed under examples/three-tier/policies.yaml)
TRAFFIC = [
    ("frontend/web", "backend/api", 8080, "TCP", True),
    ("backend/api", "database/postgres", 5432, "TCP", True),
    ("frontend/web", "kube-system/coredns", 53, "UDP", True),
    ("frontend/web", "kube-system/coredns", 53, "TCP", True),  # the staged policy: would-deny
    ("backend/api", "kube-system/coredns", 53, "UDP", True),
    ("frontend/web", "database/postgres", 5432, "TCP", False),
    ("kube-system/coredns", "backend/api", 8080, "TCP", False),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: apt-get install chromium"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    p = browser.new_page(viewport={"width": 1400, "height": 860})
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield p
    finally:
        p.close()
    assert not errors, f"errors in the page: {errors}"


@pytest.fixture(scope="module")
def app_lab() -> Iterator[lab.LabState]:
    name = f"b{os.urandom(3).hex()}"
    state = lab.up([THREE_TIER, STAGED], name, nodes=2)
    try:
        assert state.console_url, "lab up started no console"
        wait_for(lambda: all_reachable(state), 20)
        yield state
    finally:
        lab.down(name)


def api(state: lab.LabState, path: str, params: list[tuple[str, str]] | None = None) -> Any:
    assert state.console_url
    url = state.console_url.rstrip("/") + path + ("?" + urlencode(params) if params else "")
    with urlopen(url, timeout=10) as r:
        return json.load(r)


def all_reachable(state: lab.LabState) -> bool:
    nodes = api(state, "/api/nodes")["nodes"]
    return bool(nodes) and all(n["reachable"] for n in nodes)


def wait_for(cond: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def endpoints(state: lab.LabState) -> dict[str, ProbeEndpoint]:
    return {e.key: e for e in lab.probe_endpoints(state)}


def send_traffic(state: lab.LabState) -> None:
    eps = endpoints(state)
    for src, dst, port, proto, allowed in TRAFFIC:
        got = probe_pair(eps[src], eps[dst], port, proto, 1.0)
        assert got == allowed, f"{src} -> {dst} {port}/{proto}: probed {got}, expected {allowed}"


def open_page(page: Page, state: lab.LabState, fragment: str) -> None:
    page.goto(f"{state.console_url}#{fragment}")


def rows(page: Page) -> list[dict[str, str]]:
    return page.evaluate(
        """() => [...document.querySelectorAll('#flow-table tbody tr')].map((tr) => {
            const c = [...tr.cells].map((td) => td.textContent.trim());
            return {source: c[1], destination: c[2], port: c[3], direction: c[4],
                    verdict: tr.dataset.verdict, staged: tr.dataset.staged,
                    policies: [...tr.cells[6].querySelectorAll('span')].map((s) => s.textContent)
                        .join(', '),
                    why: c[7], node: c[8]};
        })"""
    )


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name))


@pytest.mark.kernel
def test_flows_appear_within_seconds_of_traffic(page: Page, app_lab: lab.LabState) -> None:
    open_page(page, app_lab, "flows?to=backend/")
    page.wait_for_function("document.body.dataset.flowsLoaded === '1'")
    expect(page.locator("#flow-status")).to_contain_text("live", timeout=WAIT_MS)
    row = page.locator("#flow-table tbody tr", has_text="frontend/web").filter(
        has_text="backend/api"
    )
    assert row.count() == 0, "the first test: no traffic yet"
    eps = endpoints(app_lab)
    began = time.monotonic()
    assert probe_pair(eps["frontend/web"], eps["backend/api"], 8080, "TCP", 1.0)
    expect(row.first).to_be_visible(timeout=5_000)
    shown_after = time.monotonic() - began
    assert shown_after < 5, f"the flow took {shown_after:.1f} s to show"
    assert all(r["destination"].startswith("backend/") for r in rows(page))


@pytest.mark.kernel
def test_a_filter_narrows_the_table_to_what_the_api_returns(
    page: Page, app_lab: lab.LabState
) -> None:
    send_traffic(app_lab)
    wait_for(lambda: api(app_lab, "/api/flows", [("verdict", "denied")])["flows"], 10)
    open_page(page, app_lab, "flows")
    page.wait_for_function("document.body.dataset.flowsLoaded === '1'")
    everything = len(rows(page))
    page.fill("#filters input[name=namespace]", "database")
    page.select_option("#filters select[name=verdict]", "denied")
    page.wait_for_function(
        "document.body.dataset.flowsQuery === 'namespace=database&verdict=denied'"
    )
    want = api(app_lab, "/api/flows", [("namespace", "database"), ("verdict", "denied")])
    expected = {
        (r["source"], r["destination"], f"{r['port']}/{r['protocol']}", r["direction"], r["node"])
        for r in want["flows"]
    }
    shown = rows(page)
    got = {(r["source"], r["destination"], r["port"], r["direction"], r["node"]) for r in shown}
    assert expected and got == expected
    assert len(shown) < everything
    assert all(r["verdict"] == "denied" for r in shown)
    assert "namespace=database" in page.url and "verdict=denied" in page.url


@pytest.mark.kernel
def test_a_denied_flow_is_shown_denied_with_its_policy(page: Page, app_lab: lab.LabState) -> None:
    send_traffic(app_lab)
    open_page(page, app_lab, "flows")
    page.wait_for_function("document.body.dataset.flowsLoaded === '1'")
    denied = page.locator("#flow-table tbody tr[data-verdict=denied]").filter(
        has_text="frontend/web"
    ).filter(has_text="database/postgres")
    expect(denied.first).to_be_visible(timeout=WAIT_MS)
    model = lab.model_state(app_lab)
    shown = rows(page)
    # Denied at the source's egress (the packet goes no further), and at a destination's ingress.
    for src, dst, port, direction in [
        ("frontend/web", "database/postgres", 5432, "egress"),
        ("kube-system/coredns", "backend/api", 8080, "ingress"),
    ]:
        found = [
            r for r in shown
            if (r["source"], r["destination"], r["port"], r["direction"])
            == (src, dst, f"{port}/TCP", direction)
        ]  # fmt: skip
        assert found, f"no {direction} row for {src} -> {dst}"
        side = getattr(verdict_for(model, src, dst, port, "TCP"), direction)
        for r in found:
            assert r["verdict"] == "denied" and r["why"].startswith("denied"), r
            assert set(r["policies"].split(", ")) == set(side.isolating), r
            assert all(p in r["why"] for p in side.isolating), r
    # The staged policy's would-deny (TCP DNS from frontend) is marked too.
    staged = [r for r in rows(page) if r["staged"] == "would-deny"]
    assert any(r["destination"] == "kube-system/coredns" and r["port"] == "53/TCP" for r in staged)
    shot(page, "flows.png")


@pytest.mark.kernel
def test_the_map_has_the_workloads_and_edges_coloured_by_verdict(
    page: Page, app_lab: lab.LabState
) -> None:
    send_traffic(app_lab)
    eps = endpoints(app_lab)
    with outside_host(app_lab, OUTSIDE_PORT) as out:
        # coredns's egress is not isolated; api's allows only the database and DNS.
        assert answered_by(eps["kube-system/coredns"].netns, out.ip, OUTSIDE_PORT) == "outside"
        assert answered_by(eps["backend/api"].netns, out.ip, OUTSIDE_PORT, 0.5) is None
    outside = str(out.ip)
    open_page(page, app_lab, "map")
    page.wait_for_function("document.body.dataset.mapLoaded === '1'", timeout=WAIT_MS)
    drawn = page.evaluate("window.consoleViews.map.summary()")
    graph = api(app_lab, "/api/graph")
    assert {"frontend/web", "backend/api", "database/postgres", "kube-system/coredns"} <= set(
        drawn["nodes"]
    )
    assert set(drawn["nodes"]) == {n["id"] for n in graph["nodes"]}
    colours = {(e["source"], e["target"], e["verdict"]): e["colour"] for e in drawn["edges"]}
    green, red = "rgb(46,125,50)", "rgb(198,40,40)"
    assert colours[("frontend/web", "backend/api", "allowed")] == green
    assert colours[("frontend/web", "database/postgres", "denied")] == red
    assert outside in drawn["nodes"]  # a peer outside the cluster, by its address
    assert colours[("kube-system/coredns", outside, "allowed")] == green
    assert colours[("backend/api", outside, "denied")] == red
    assert {(e["source"], e["target"], e["verdict"]) for e in graph["edges"]} == set(colours)
    shot(page, "map.png")
    # Filtered by namespace: only edges with an end in it.
    page.select_option("#map-form select[name=namespace]", "database")
    page.wait_for_function("document.body.dataset.mapLoaded === '2'", timeout=WAIT_MS)
    drawn = page.evaluate("window.consoleViews.map.summary()")
    assert all("database/postgres" in (e["source"], e["target"]) for e in drawn["edges"])
    assert "frontend/web" in drawn["nodes"] and drawn["edges"]


def _page_matrix(page: Page) -> list[dict[str, Any]]:
    return page.evaluate(
        """() => [...document.querySelectorAll('#policy-detail section.port')].map((s) => {
            const [port, protocol] = s.dataset.port.split('/');
            const matrix = {};
            for (const td of s.querySelectorAll('td[data-from]')) {
                (matrix[td.dataset.from] ||= {})[td.dataset.to] = td.classList.contains('ok');
            }
            return {port: Number(port), protocol, matrix};
        })"""
    )


@pytest.mark.kernel
def test_the_policy_view_shows_what_the_model_says(page: Page, app_lab: lab.LabState) -> None:
    send_traffic(app_lab)
    wait_for(
        lambda: api(app_lab, "/api/policies/backend/backend-from-frontend")["flows"], 10
    )
    open_page(page, app_lab, "policies/backend/backend-from-frontend")
    page.wait_for_function(
        "document.body.dataset.policyLoaded === 'NetworkPolicy:backend/backend-from-frontend'",
        timeout=WAIT_MS,
    )
    doc = api(app_lab, "/api/policies/backend/backend-from-frontend")
    assert _page_matrix(page) == doc["matrix"]
    model = lab.model_state(app_lab)
    for m in doc["matrix"]:
        assert m["matrix"] == reachability(model, m["port"], m["protocol"])
    selects = page.locator("#policy-detail ul.selects li").all_text_contents()
    assert selects == doc["selects"] == ["backend/api"]
    flows = page.locator("#policy-detail table.flows tbody tr")
    expect(flows).to_have_count(len(doc["flows"]))
    assert "frontend/web" in flows.first.text_content()
    listed = page.locator("#policy-list a").evaluate_all("as => as.map((a) => a.dataset.key)")
    assert sorted(listed) == sorted(p["key"] for p in api(app_lab, "/api/policies")["policies"])
    shot(page, "policy.png")

    # The staged policy: its matrix as if applied (TCP DNS from frontend denied).
    page.click("#policy-list a[data-kind=StagedNetworkPolicy][data-key='frontend/allow-dns']")
    page.wait_for_function(
        "document.body.dataset.policyLoaded === 'StagedNetworkPolicy:frontend/allow-dns'",
        timeout=WAIT_MS,
    )
    staged = api(
        app_lab, "/api/policies/frontend/allow-dns", [("kind", "StagedNetworkPolicy")]
    )
    assert _page_matrix(page) == staged["matrix"]


@pytest.mark.kernel
def test_the_nodes_strip_shows_each_node_reachable(page: Page, app_lab: lab.LabState) -> None:
    open_page(page, app_lab, "flows")
    strip = page.locator("#nodes li")
    expect(strip).to_have_count(2, timeout=WAIT_MS)
    assert strip.evaluate_all("ls => ls.map((l) => [l.dataset.node, l.dataset.reachable])") == [
        ["node1", "true"],
        ["node2", "true"],
    ]


@pytest.mark.kernel
def test_an_agent_gone_shows_its_node_unreachable_and_the_others_flows_continue(
    page: Page, app_lab: lab.LabState
) -> None:
    """Last of the lab's tests: it kills an agent (node2 runs backend/api and
    database/postgres; node1 frontend/web and kube-system/coredns)."""
    open_page(page, app_lab, "flows?from=frontend/web&to=backend/")
    page.wait_for_function("document.body.dataset.flowsLoaded === '1'")
    expect(page.locator("#flow-status")).to_contain_text("live", timeout=WAIT_MS)
    node2 = page.locator("#nodes li[data-node=node2]")
    expect(node2).to_have_attribute("data-reachable", "true", timeout=WAIT_MS)
    os.kill(app_lab.agent_pids["node2"], signal.SIGKILL)
    expect(node2).to_have_attribute("data-reachable", "false", timeout=20_000)
    expect(page.locator("#nodes li[data-node=node1]")).to_have_attribute("data-reachable", "true")
    expect(node2).to_have_class(re.compile(r"\bunreachable\b"))
    expect(node2).to_contain_text("unreachable")
    shot(page, "nodes-unreachable.png")

    # node1's flows still arrive: web's egress to api is judged (and reported) on node1.
    egress = page.locator("#flow-table tbody tr", has_text="egress").filter(has_text="node1")
    before = egress.first.locator("td").first.get_attribute("title") if egress.count() else None
    time.sleep(1.1)  # last_seen moves on by at least a millisecond
    eps = endpoints(app_lab)
    assert probe_pair(eps["frontend/web"], eps["backend/api"], 8080, "TCP", 1.0)
    expect(egress.first).to_be_visible(timeout=5_000)
    wait_for(lambda: egress.first.locator("td").first.get_attribute("title") != before, 5)

    lab.restart_agent(app_lab, "node2")
    expect(node2).to_have_attribute("data-reachable", "true", timeout=30_000)


def test_the_analyze_report_explains_a_cell_on_hover(
    page: Page, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", str(THREE_TIER), "--output", "html"]) == 0
    report = tmp_path / "report.html"
    report.write_text(capsys.readouterr().out)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(report.as_uri())
    cell = page.locator(
        "#port-5432-tcp ~ table td[data-from='frontend/web'][data-to='database/postgres']"
    ).first
    expect(cell).to_have_text("--")
    cell.hover()
    state = planned_state(load_for_command([str(THREE_TIER)], False)[0])
    want = explain_text(state, "frontend/web", "database/postgres", 5432, "TCP")
    expect(page.locator("#explain")).to_have_text(want)
    assert "DENIED" in want
    allowed = page.locator(
        "#port-5432-tcp ~ table td[data-from='backend/api'][data-to='database/postgres']"
    ).first
    allowed.click()
    page.mouse.move(5, 5)  # away: the clicked cell stays pinned
    expect(page.locator("#explain")).to_contain_text("backend/api -> database/postgres TCP/5432")
    assert requests == [report.as_uri()], "the report must load nothing else"
    shot(page, "analyze-report.png")
