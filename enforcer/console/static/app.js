// The console page: tabs (flows, map, policies) routed by the URL's hash, and the nodes strip.
//   #flows?namespace=x&verdict=denied    #map    #policies/NS/NAME[?kind=StagedNetworkPolicy]

import {FlowView} from './flows.js';
import {PolicyView} from './policies.js';
import {el, getJSON} from './util.js';

const NODES_EVERY_MS = 5000;

const views = {
  flows: new FlowView(document.getElementById('view-flows')),
  map: null,  // loaded when first shown: the graph library is most of the page's bytes
  policies: new PolicyView(document.getElementById('view-policies')),
};
let current = null;
let policiesListed = null;
let flowsLoading = Promise.resolve();

function parseHash() {
  const [path, query = ''] = location.hash.replace(/^#/, '').split('?');
  const [view, ...rest] = path.split('/');
  return {view: view in views ? view : 'flows', rest: rest.join('/'),
    params: [...new URLSearchParams(query)]};
}

async function route() {
  const {view, rest, params} = parseHash();
  for (const [name, v] of Object.entries(views)) {
    document.getElementById(`view-${name}`).hidden = name !== view;
  }
  for (const a of document.querySelectorAll('#tabs a')) {
    a.classList.toggle('active', a.dataset.view === view);
  }
  const entering = current !== view;
  current = view;
  if (view === 'flows' && entering) {
    views.flows.setFilters(params);
    flowsLoading = views.flows.reload();
  } else if (view === 'map' && entering) {
    if (!views.map) {
      const {MapView} = await import('./map.js');
      views.map ||= new MapView(document.getElementById('view-map'));
    }
    views.map.load();
  } else if (view === 'policies') {
    policiesListed ||= views.policies.loadList().then(fillPolicyNames);
    await policiesListed;
    const kind = new URLSearchParams(params).get('kind') || 'NetworkPolicy';
    if (rest) views.policies.show(rest, kind);
  }
}

function fillPolicyNames(policies) {
  document.getElementById('dl-policies').replaceChildren(
    ...policies.map((p) => el('option', {value: p.key})));
  const namespaces = new Set(policies.map((p) => p.key.split('/')[0]));
  document.getElementById('dl-namespaces').replaceChildren(
    ...[...namespaces].sort().map((ns) => el('option', {value: ns})));
  return policies;
}

async function refreshNodes() {
  const strip = document.getElementById('nodes');
  try {
    const doc = await getJSON('api/nodes');
    strip.replaceChildren(...doc.nodes.map((n) => {
      const state = !n.reachable ? 'unreachable' : n.ready === false ? 'not-ready' : 'ok';
      const tip = [
        n.reachable ? 'reachable' : `unreachable: ${n.error || 'no answer'}`,
        n.ready === false ? 'not ready' : null,
        n.endpoints !== undefined && n.endpoints !== null ? `${n.endpoints} endpoints` : null,
        n.last_record ? `last flow ${n.last_record}` : null,
      ].filter(Boolean).join('\n');
      return el('li', {class: `node ${state}`, title: tip, 'data-node': n.name,
        'data-reachable': String(Boolean(n.reachable))},
      n.name, state === 'ok' ? '' : el('span', {class: 'why'}, ` ${state.replace('-', ' ')}`));
    }));
  } catch (err) {
    strip.replaceChildren(el('li', {class: 'node unreachable'}, `console: ${err.message}`));
  }
}

window.addEventListener('hashchange', route);
route();
refreshNodes();
setInterval(refreshNodes, NODES_EVERY_MS);
// Suggestions for the flow filters' namespace and policy fields, once the flows are in (not
// to compete with them for the console's attention).
flowsLoading.finally(() => {
  policiesListed ||= views.policies.loadList().then(fillPolicyNames).catch(() => null);
});
window.consoleViews = views;  // for the browser tests and the bench
