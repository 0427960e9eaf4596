// The map: workloads grouped by namespace and the external peers they reach, edges coloured
// by verdict, laid out by Cytoscape.js with the dagre layout (vendored, see vendor/README.md).

import cytoscape from './vendor/cytoscape.esm.min.js';
import dagre from './vendor/cytoscape-dagre.esm.min.js';
import {getJSON} from './util.js';

cytoscape.use(dagre);

const COLOURS = {
  'allowed': '#2e7d32', 'denied': '#c62828', 'audit': '#ef8f00',
  'would-deny': '#7b1fa2', 'would-allow': '#1565c0',
};
const OUTSIDE = '(outside the cluster)';
const MAX_WORKLOADS = 120;
const SEVERITY = ['allowed', 'would-allow', 'audit', 'would-deny', 'denied'];
const MAX_EXTERNAL = 30;
const MAX_FIT_ZOOM = 1.4;

const STYLE = [
  {selector: 'node', style: {
    'label': 'data(label)', 'font-size': 11, 'min-zoomed-font-size': 6, 'text-valign': 'bottom', 'text-margin-y': 4,
    'background-color': '#4b5563', 'width': 18, 'height': 18, 'color': '#111827'}},
  {selector: 'node[kind = "external"]', style: {'shape': 'diamond', 'background-color': '#9ca3af'}},
  {selector: 'node[kind = "namespace"]', style: {
    'shape': 'round-rectangle', 'width': 30, 'height': 22, 'background-color': '#bfdbfe',
    'border-color': '#3b82f6', 'border-width': 1, 'font-weight': 'bold'}},
  {selector: ':parent', style: {
    'background-color': '#eef2f7', 'background-opacity': 1, 'border-color': '#cbd5e1',
    'border-width': 1, 'shape': 'round-rectangle', 'padding': 14, 'text-valign': 'top',
    'text-margin-y': -4, 'font-weight': 'bold', 'color': '#334155'}},
  {selector: 'edge', style: {
    'width': 'mapData(weight, 0, 6, 1.5, 5)', 'curve-style': 'bezier',
    'target-arrow-shape': 'triangle', 'arrow-scale': 0.9, 'label': 'data(label)',
    'font-size': 9, 'min-zoomed-font-size': 7, 'text-rotation': 'autorotate', 'text-background-color': '#fff',
    'text-background-opacity': 0.8, 'text-background-padding': 1}},
  ...Object.entries(COLOURS).map(([v, c]) => ({
    selector: `edge[verdict = "${v}"]`,
    style: {'line-color': c, 'target-arrow-color': c, 'color': c}})),
  {selector: 'edge[verdict = "would-deny"], edge[verdict = "audit"]',
    style: {'line-style': 'dashed'}},
  {selector: ':selected', style: {'overlay-opacity': 0.15, 'overlay-color': '#1d4ed8'}},
];

export class MapView {
  constructor(root) {
    this.form = root.querySelector('#map-form');
    this.container = root.querySelector('#map');
    this.status = root.querySelector('#map-status');
    this.detail = root.querySelector('#map-detail');
    this.cy = null;
    this.generation = 0;
    this.form.addEventListener('change', () => this.load());
    root.querySelector('#map-refresh').addEventListener('click', () => this.load());
  }

  async load() {
    const gen = ++this.generation;
    const ns = this.form.elements.namespace.value;
    const since = Math.floor(Date.now() / 1000) - Number(this.form.elements.window.value);
    const params = [['since', String(since)]];
    if (ns) params.push(['namespace', ns]);
    this.status.textContent = 'loading…';
    let graph;
    try {
      graph = await getJSON('api/graph', params);
    } catch (err) {
      if (gen === this.generation) this.status.textContent = `error: ${err.message}`;
      return;
    }
    if (gen !== this.generation) return;
    this.fillNamespaces(graph.nodes);
    this.draw(graph, ns);
    requestAnimationFrame(() => setTimeout(() => performance.mark(`map-drawn-${gen}`), 0));
    const denied = graph.edges.filter((e) => e.verdict === 'denied').length;
    this.status.textContent = `${graph.nodes.length} peers, ${graph.edges.length} edges` +
      (denied ? `, ${denied} denied` : '');
    document.body.dataset.mapLoaded = String(gen);
  }

  fillNamespaces(nodes) {
    const select = this.form.elements.namespace;
    const have = new Set([...select.options].map((o) => o.value));
    for (const ns of [...new Set(nodes.map((n) => n.namespace).filter(Boolean))].sort()) {
      if (!have.has(ns)) select.append(new Option(ns, ns));
    }
  }

  // Cytoscape elements. Past MAX_WORKLOADS peers, the namespaces not in focus (all of them
  // without a namespace filter) are drawn as one node each, and addresses outside the cluster
  // as one node past MAX_EXTERNAL: a map of hundreds of workloads is unreadable, and the
  // namespace is where the policies are. Tap a namespace node to open it.
  elements(graph, focus) {
    const workloads = graph.nodes.filter((n) => n.kind !== 'external');
    const externals = graph.nodes.filter((n) => n.kind === 'external');
    const collapse = workloads.length > MAX_WORKLOADS;
    const place = new Map();  // peer id -> the id of the node that stands for it
    const out = new Map();    // node id -> element
    const groups = new Set();
    for (const n of workloads) {
      const ns = n.namespace || OUTSIDE;
      if (collapse && ns !== focus) {
        place.set(n.id, `ns:${ns}`);
        const e = out.get(`ns:${ns}`) || {data: {id: `ns:${ns}`, label: ns, kind: 'namespace',
          namespace: ns, members: 0}};
        e.data.members += 1;
        e.data.label = `${ns} (${e.data.members})`;
        out.set(`ns:${ns}`, e);
      } else {
        place.set(n.id, n.id);
        groups.add(ns);
        out.set(n.id, {data: {id: n.id, label: n.label || n.id, kind: n.kind,
          parent: `group:${ns}`}});
      }
    }
    for (const n of externals) {
      const id = externals.length > MAX_EXTERNAL ? 'outside' : n.id;
      place.set(n.id, id);
      const e = out.get(id) || {data: {id, label: id === 'outside' ? OUTSIDE : n.label || n.id,
        kind: 'external', members: 0, parent: id === 'outside' ? undefined : `group:${OUTSIDE}`}};
      if (id !== 'outside') groups.add(OUTSIDE);
      e.data.members += 1;
      if (id === 'outside') e.data.label = `${OUTSIDE} (${e.data.members})`;
      out.set(id, e);
    }
    const parents = [...groups].map((g) => ({data: {id: `group:${g}`, label: g, kind: 'group'}}));
    // One edge per (source, target, verdict), its ports in the label: fewer lines to read.
    // Between collapsed nodes, one edge per (source, target) in its most severe verdict.
    const merged = new Map();
    for (const e of graph.edges) {
      const source = place.get(e.source);
      const target = place.get(e.target);
      if (!source || !target) continue;
      const summary = source !== e.source || target !== e.target;
      const key = summary ? `${source}|${target}` : `${source}|${target}|${e.verdict}`;
      const m = merged.get(key) || {source, target, verdict: e.verdict, ports: new Set(),
        count: 0, policies: new Set(), summary, verdicts: {}};
      if (SEVERITY.indexOf(e.verdict) > SEVERITY.indexOf(m.verdict)) m.verdict = e.verdict;
      m.verdicts[e.verdict] = (m.verdicts[e.verdict] || 0) + (e.count || 0);
      m.ports.add(`${e.port}/${e.protocol}`);
      m.count += e.count || 0;
      for (const p of e.policies || []) m.policies.add(p);
      merged.set(key, m);
    }
    const edges = [...merged.values()].map((m, i) => {
      const ports = [...m.ports];
      const label = m.summary ? '' :
        ports.slice(0, 3).join(' ') + (ports.length > 3 ? ` +${ports.length - 3}` : '');
      return {data: {id: `e${i}`, source: m.source, target: m.target, verdict: m.verdict,
        label, ports, weight: Math.log10(1 + m.count), count: m.count, verdicts: m.verdicts,
        policies: [...m.policies].sort()}};
    });
    return [...parents, ...out.values(), ...edges];
  }

  // dagre (layered, readable) while the graph is small enough for it to be quick; a force
  // layout past that, a circle for a dense tangle.
  static layout(nodes, edges) {
    if (nodes <= 150 && edges <= 400) {
      return {name: 'dagre', rankDir: 'LR', nodeSep: 50, rankSep: 160, edgeSep: 20, padding: 30,
        animate: false};
    }
    if (edges <= 2000) return {name: 'cose', animate: false, numIter: 500, padding: 20};
    return {name: 'circle', animate: false, padding: 20};
  }

  draw(graph, focus) {
    if (this.cy) this.cy.destroy();
    this.detail.textContent = '';
    const elements = this.elements(graph, focus);
    const edges = elements.filter((e) => e.data.source).length;
    this.cy = cytoscape({
      container: this.container,
      elements,
      style: STYLE,
      layout: MapView.layout(elements.length - edges, edges),
      minZoom: 0.05,
    });
    // A small graph fitted to the panel would be drawn huge: keep it at most a little larger
    // than life, centred.
    if (this.cy.zoom() > MAX_FIT_ZOOM) {
      this.cy.zoom(MAX_FIT_ZOOM);
      this.cy.center();
    }
    this.cy.on('tap', 'edge', (evt) => {
      const d = evt.target.data();
      const verdicts = Object.entries(d.verdicts).map(([v, n]) => `${v} ${n}`).join(', ');
      this.detail.textContent = `${d.source} -> ${d.target} ${d.ports.join(' ')}: ` +
        `${verdicts}\npolicies: ${d.policies.join(', ') || '—'}`;
    });
    this.cy.on('tap', 'node', (evt) => {
      const n = evt.target;
      if (n.isParent()) return;
      if (n.data('kind') === 'namespace') {
        this.form.elements.namespace.value = n.data('namespace');
        this.load();
        return;
      }
      const lines = n.connectedEdges().map((e) => {
        const d = e.data();
        return `${d.source} -> ${d.target} ${d.ports.join(' ')}: ${d.verdict}`;
      });
      this.detail.textContent = `${n.id()}\n${lines.join('\n')}`;
    });
  }

  // For tests and the bench: what is drawn.
  summary() {
    if (!this.cy) return null;
    return {
      nodes: this.cy.nodes().filter((n) => !n.isParent()).map((n) => n.id()),
      edges: this.cy.edges().map((e) => ({...e.data(), colour: e.style('line-color')})),
    };
  }
}
