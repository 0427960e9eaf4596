// The policy view: a NetworkPolicy or StagedNetworkPolicy, the pods it selects, what it allows
// (the model's reachability matrix per port) and the recent flows it decided.

import {el, flowTable, getJSON, matrixTable} from './util.js';

function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

export class PolicyView {
  constructor(root) {
    this.list = root.querySelector('#policy-list');
    this.detail = root.querySelector('#policy-detail');
    this.generation = 0;
    this.policies = [];
  }

  async loadList() {
    const doc = await getJSON('api/policies');
    this.policies = doc.policies;
    this.list.replaceChildren(...doc.policies.map((p) => {
      const a = el('a', {href: this.href(p), 'data-key': p.key, 'data-kind': p.kind},
        p.key, p.kind !== 'NetworkPolicy' ? el('span', {class: 'kind'}, ' staged') : null,
        el('span', {class: 'count'}, ` ${plural((p.selects || []).length, 'pod')}`));
      return el('li', {}, a);
    }));
    return doc.policies;
  }

  href(p) {
    const kind = p.kind === 'NetworkPolicy' ? '' : `?kind=${encodeURIComponent(p.kind)}`;
    return `#policies/${p.key}${kind}`;
  }

  async show(key, kind) {
    const gen = ++this.generation;
    for (const a of this.list.querySelectorAll('a')) {
      a.classList.toggle('selected', a.dataset.key === key &&
        (a.dataset.kind === (kind || 'NetworkPolicy')));
    }
    this.detail.replaceChildren(el('p', {class: 'status'}, 'loading…'));
    const params = kind && kind !== 'NetworkPolicy' ? [['kind', kind]] : [];
    let doc;
    try {
      doc = await getJSON(`api/policies/${key}`, params);
    } catch (err) {
      if (gen === this.generation) {
        this.detail.replaceChildren(el('p', {class: 'status'}, `error: ${err.message}`));
      }
      return;
    }
    if (gen !== this.generation) return;
    this.render(doc);
    document.body.dataset.policyLoaded = `${doc.kind}:${doc.key}`;
  }

  render(doc) {
    const selects = doc.selects || [];
    const parts = [
      el('h2', {}, doc.key, el('span', {class: 'kind'}, ` ${doc.kind}`)),
      el('h3', {}, `Selects ${plural(selects.length, 'pod')}`),
      selects.length
        ? el('ul', {class: 'selects'}, ...selects.map((s) => el('li', {}, s)))
        : el('p', {class: 'status'}, 'no pod: this policy selects nothing'),
      el('h3', {}, 'What it allows'),
      el('p', {class: 'hint'}, 'The model\'s reachability (enforcer analyze) with this policy ' +
        'in force, on each port its pods declare: rows from, columns to; its pods in bold.'),
    ];
    for (const m of doc.matrix || []) {
      parts.push(el('section', {class: 'port', 'data-port': `${m.port}/${m.protocol}`},
        el('h4', {}, `port ${m.port}/${m.protocol}`), matrixTable(m.matrix, new Set(selects))));
    }
    if (!(doc.matrix || []).length) parts.push(el('p', {class: 'status'}, 'no port to analyze'));
    const flows = doc.flows || [];
    parts.push(el('h3', {}, `Flows it decided recently (${flows.length})`));
    parts.push(flows.length ? el('div', {class: 'scroll'}, flowTable(flows))
      : el('p', {class: 'status'}, 'none yet'));
    parts.push(el('details', {open: true}, el('summary', {}, 'spec'),
      el('pre', {class: 'spec'}, JSON.stringify(doc.spec, null, 2))));
    this.detail.replaceChildren(...parts);
  }
}
