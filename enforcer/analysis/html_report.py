"""`enforcer analyze --output html`: the reachability matrices as one self-contained HTML file.

Everything is inline (CSS, a few lines of JS, the data): a CI pipeline can keep the file as an
artifact and anyone can open it offline. Rows are sources, columns destinations, one matrix per
port as in the table output; each cell carries the `--explain` text for its pair
(`explain_text`), shown on hover and pinned on click.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape
from typing import Any

from enforcer.analysis.explain import explain_text
from enforcer.analysis.service_matrix import describe_route, service_routes
from enforcer.model.cluster import ClusterState

Explainer = Callable[[str, str], str]

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d2330;background:#fff}
h1{font-size:1.3em;margin:0 0 .3em}h2{font-size:1.1em;margin:1.6em 0 .4em}
.meta,.legend{color:#555}.legend span{display:inline-block;padding:0 .5em;margin-right:.6em}
nav a{margin-right:1em}
table{border-collapse:collapse;margin-top:.4em}
th,td{border:1px solid #d5d9e0;padding:2px 6px;text-align:center;font-family:ui-monospace,monospace}
th.row{text-align:left;white-space:nowrap}
th.col{writing-mode:vertical-rl;transform:rotate(180deg);vertical-align:bottom;white-space:nowrap}
td.ok,.legend .ok{background:#d8f3dc;color:#1b5e20}
td.deny,.legend .deny{background:#fbd5d5;color:#8e1b1b}
td.self{background-image:repeating-linear-gradient(45deg,transparent 0 4px,#0001 4px 6px)}
td[data-explain]{cursor:pointer}td.pinned,td:hover{outline:2px solid #1d4ed8}
#explain{position:fixed;right:1em;bottom:1em;max-width:48em;margin:0;padding:.8em 1em;
background:#111827;color:#f3f4f6;border-radius:6px;white-space:pre-wrap;font-size:13px;
box-shadow:0 4px 16px #0004}
#explain:empty{display:none}
"""

_JS = """
(function () {
  var panel = document.getElementById('explain');
  var pinned = null;
  function show(td) { panel.textContent = td ? td.getAttribute('data-explain') : ''; }
  document.addEventListener('mouseover', function (e) {
    show(e.target.closest('td[data-explain]') || pinned);
  });
  document.addEventListener('click', function (e) {
    var td = e.target.closest('td[data-explain]');
    if (pinned) pinned.classList.remove('pinned');
    pinned = td && td !== pinned ? td : null;
    if (pinned) pinned.classList.add('pinned');
    show(pinned || td);
  });
})();
"""


def pod_explainer(state: ClusterState, port: int, protocol: str) -> Explainer:
    return lambda src, dst: explain_text(state, src, dst, port, protocol)


def service_explainer(state: ClusterState, port: int, protocol: str) -> Explainer:
    """Through Services a cell is allowed when every route is: explain each route's backend
    on its target port."""
    routes = service_routes(state, port, protocol)

    def explain(src: str, dst: str) -> str:
        return "\n".join(
            f"through {describe_route(route)}:\n"
            + explain_text(state, src, dst, route[2].port, protocol)
            for route in routes.get(dst, [])
        )

    return explain


def render_html(
    docs: Sequence[dict[str, Any]],
    explainers: Sequence[Explainer],
    sources: Sequence[str],
    notes: Sequence[str] = (),
) -> str:
    """One page: a section per matrix document (`matrix_document` or `service_document`),
    with the explainer of the same index giving each cell's text."""
    title = "Reachability: " + ", ".join(sources)
    nav = " ".join(f'<a href="#{_anchor(d)}">{d["port"]}/{escape(d["protocol"])}</a>' for d in docs)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        '<p class="meta">enforcer analyze. Rows: from, columns: to. Hover a cell for the '
        "policies and rules that decide it (what <code>--explain</code> prints); click to pin."
        "</p>",
        '<p class="legend"><span class="ok">OK</span>allowed '
        '<span class="deny">--</span>denied (a pod may always reach itself)</p>',
    ]
    parts += [f'<p class="meta">{escape(n)}</p>' for n in notes]
    if len(docs) > 1:
        parts.append(f"<nav>{nav}</nav>")
    for doc, explain in zip(docs, explainers, strict=True):
        parts.append(_section(doc, explain))
    parts += ['<pre id="explain"></pre>', f"<script>{_JS}</script>", "</body></html>"]
    return "\n".join(parts)


def _anchor(doc: dict[str, Any]) -> str:
    return f"port-{doc['port']}-{doc['protocol'].lower()}"


def _section(doc: dict[str, Any], explain: Explainer) -> str:
    matrix: dict[str, dict[str, bool]] = doc["matrix"]
    via = " through Services" if doc.get("via") == "service" else ""
    rows = list(matrix)
    cols = list(next(iter(matrix.values()), {}))
    head = f'<h2 id="{_anchor(doc)}">Port {doc["port"]}/{escape(doc["protocol"])}{via}</h2>'
    if not rows or not cols:
        empty = "no pods" if not rows else "no Service fronts a pod on this port"
        return f'{head}<p class="meta">({empty})</p>'
    allowed = sum(matrix[s][d] and s != d for s in rows for d in cols)
    pairs = sum(s != d for s in rows for d in cols)
    out = [
        head,
        f'<p class="meta">{allowed} of {pairs} pairs allowed</p>',
        "<table><thead><tr><th></th>",
    ]
    out += [f'<th class="col" scope="col">{escape(c)}</th>' for c in cols]
    out.append("</tr></thead><tbody>")
    for src in rows:
        cells = [f'<tr><th class="row" scope="row">{escape(src)}</th>']
        for dst in cols:
            ok = matrix[src][dst]
            cls = ("ok" if ok else "deny") + (" self" if src == dst else "")
            cells.append(
                f'<td class="{cls}" data-from="{escape(src)}" data-to="{escape(dst)}" '
                f'data-explain="{escape(explain(src, dst))}">{"OK" if ok else "--"}</td>'
            )
        out.append("".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)
