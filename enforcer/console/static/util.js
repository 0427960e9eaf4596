// Small helpers shared by the views: the JSON API, element building, a flow row.

export const VERDICTS = ['allowed', 'denied', 'audit', 'would-deny', 'would-allow'];

// GET a JSON document of the console's API (relative, so the page works behind a proxy prefix).
export async function getJSON(path, params = []) {
  const url = new URL(path, document.baseURI);
  for (const [k, v] of params) url.searchParams.append(k, v);
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status} ${(await r.text()).slice(0, 200)}`);
  return r.json();
}

// el('td', {class: 'x', title: 't'}, 'text', childNode, ...)
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('data-')) node.setAttribute(k, v);
    else if (k === 'class') node.className = v;
    else if (k in node) node[k] = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

export function verdictBadge(verdict) {
  return el('span', {class: `badge v-${verdict}`}, verdict);
}

function clock(rfc3339) {
  const d = new Date(rfc3339);
  if (Number.isNaN(d.getTime())) return rfc3339 || '';
  return d.toLocaleTimeString([], {hour12: false});
}

// One table row for a flow record: which policy decided, and why, in words.
export function flowRow(r) {
  const policies = r.policies && r.policies.length
    ? r.policies.map((p) => el('span', {}, p)) : ['—'];
  const verdict = el('td', {class: 'verdict'}, verdictBadge(r.verdict));
  if (r.staged) {
    verdict.append(' ', el('span', {
      class: `badge v-${r.staged.verdict}`,
      title: `staged: ${(r.staged.policies || []).join(', ')}`,
    }, r.staged.verdict));
  }
  return el('tr', {'data-verdict': r.verdict, 'data-staged': r.staged ? r.staged.verdict : ''},
    el('td', {title: `first seen ${r.first_seen}, last seen ${r.last_seen}`}, clock(r.last_seen)),
    el('td', {class: 'peer', title: [r.source_workload, r.source_ip].filter(Boolean).join(' ')},
      r.source),
    el('td', {class: 'peer',
      title: [r.destination_workload, r.destination_ip].filter(Boolean).join(' ')},
    r.destination),
    el('td', {}, `${r.port}/${r.protocol}`),
    el('td', {}, r.direction),
    verdict,
    el('td', {class: 'policies'}, ...policies),
    el('td', {class: 'why', title: r.reason || ''}, r.why || r.reason || ''),
    el('td', {}, r.node || ''),
    el('td', {class: 'num'}, r.count ?? ''),
  );
}

export function flowTable(records) {
  const head = ['last seen', 'source', 'destination', 'port', 'direction', 'verdict',
    'policies', 'why', 'node', 'count'];
  return el('table', {class: 'flows'},
    el('thead', {}, el('tr', {}, ...head.map((h) => el('th', {}, h)))),
    el('tbody', {}, ...records.map(flowRow)));
}

// A matrix {src: {dst: bool}} as a table: rows from, columns to; the pods in `marked` (the
// policy's selected pods) are marked in the headers.
export function matrixTable(matrix, marked = new Set()) {
  const rows = Object.keys(matrix);
  const cols = rows.length ? Object.keys(matrix[rows[0]]) : [];
  const table = el('table', {class: 'matrix'});
  table.append(el('thead', {}, el('tr', {}, el('th', {}, 'from \\ to'),
    ...cols.map((c) => el('th', {class: marked.has(c) ? 'col marked' : 'col', scope: 'col'}, c)))));
  const body = el('tbody');
  for (const src of rows) {
    const tr = el('tr', {}, el('th', {scope: 'row', class: marked.has(src) ? 'marked' : ''}, src));
    for (const dst of cols) {
      const ok = matrix[src][dst];
      tr.append(el('td', {class: ok ? 'ok' : 'deny', 'data-from': src, 'data-to': dst,
        title: `${src} -> ${dst}: ${ok ? 'allowed' : 'denied'}`}, ok ? 'OK' : '--'));
    }
    body.append(tr);
  }
  table.append(body);
  return table;
}
