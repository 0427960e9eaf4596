// The live flow table: the newest flows matching the filters (server-side, the filters of
// `enforcer flows`), then kept up to date from the Server-Sent Events stream.

import {el, flowRow, getJSON} from './util.js';

const LIMIT = 1000;        // rows fetched and shown
const REDRAW_MS = 250;     // at most one redraw of the table per this, however fast events come
const FIRST_ROWS = 60;     // fetched and drawn first (a screenful and more)
const CHUNK_ROWS = 200;    // then this many at a time

// A record's identity in the store: the same aggregate updated keeps its row.
function keyOf(r) {
  return [r.source_workload || r.source, r.destination_workload || r.destination, r.port,
    r.protocol, r.direction, r.verdict, (r.policies || []).join(','), r.node,
    r.staged ? r.staged.verdict : ''].join('|');
}

export class FlowView {
  constructor(root) {
    this.form = root.querySelector('#filters');
    this.tbody = root.querySelector('#flow-table tbody');
    this.status = root.querySelector('#flow-status');
    this.records = new Map();
    this.stream = null;
    this.generation = 0;
    this.redrawTimer = null;
    this.drawToken = 0;
    this.stats = null;
    let typing = null;
    this.form.addEventListener('input', () => {
      clearTimeout(typing);
      typing = setTimeout(() => this.reload(), 300);
    });
    this.form.addEventListener('change', () => { clearTimeout(typing); this.reload(); });
    this.form.addEventListener('reset', () => setTimeout(() => this.reload(), 0));
    this.form.addEventListener('submit', (e) => { e.preventDefault(); this.reload(); });
  }

  // The filters as query parameters: a comma in a field repeats the parameter (OR).
  params() {
    const out = [];
    for (const [name, value] of new FormData(this.form)) {
      for (const v of String(value).split(',')) if (v.trim()) out.push([name, v.trim()]);
    }
    return out;
  }

  setFilters(params) {
    const byName = {};
    for (const [k, v] of params) (byName[k] ||= []).push(v);
    for (const field of this.form.elements) {
      if (field.name) field.value = (byName[field.name] || []).join(', ');
    }
  }

  async reload() {
    const gen = ++this.generation;
    const params = this.params();
    const query = new URLSearchParams(params).toString();
    history.replaceState(null, '', `#flows${query ? '?' + query : ''}`);
    if (this.stream) this.stream.close();
    this.stream = null;
    this.status.textContent = 'loading…';
    // A screenful first (the server answers it sooner), then the rest.
    for (const limit of [FIRST_ROWS, LIMIT]) {
      let doc;
      try {
        doc = await getJSON('api/flows', [...params, ['limit', String(limit)]]);
      } catch (err) {
        if (gen === this.generation) this.status.textContent = `error: ${err.message}`;
        return;
      }
      if (gen !== this.generation) return;  // a newer filter change won
      this.records = new Map();
      for (const r of doc.flows) this.records.set(keyOf(r), r);
      this.stats = doc.stats || null;
      const complete = doc.flows.length < limit || limit === LIMIT;
      this.draw(complete);
      if (complete) break;
    }
    document.body.dataset.flowsLoaded = String(gen);
    document.body.dataset.flowsQuery = query;
    this.follow(params, gen);
  }

  follow(params, gen) {
    const url = new URL('api/flows/stream', document.baseURI);
    for (const [k, v] of params) url.searchParams.append(k, v);
    const stream = new EventSource(url);
    stream.onmessage = (e) => {
      if (gen !== this.generation) return;
      const r = JSON.parse(e.data);
      const key = keyOf(r);
      this.records.delete(key);       // re-insert: newest last
      this.records.set(key, r);
      while (this.records.size > LIMIT) this.records.delete(this.records.keys().next().value);
      this.scheduleDraw();
    };
    stream.onerror = () => {
      if (gen === this.generation) this.status.dataset.stream = 'reconnecting';
    };
    stream.onopen = () => { this.status.dataset.stream = 'live'; this.drawStatus(); };
    this.stream = stream;
  }

  scheduleDraw() {
    if (this.redrawTimer) return;
    this.redrawTimer = setTimeout(() => { this.redrawTimer = null; this.draw(); }, REDRAW_MS);
  }

  // The first screenful at once, the rest in chunks after it is painted: a thousand rows take
  // the browser most of a second to lay out, and nobody reads row 900 first.
  draw(complete = true) {
    const rows = [...this.records.values()]
      .sort((a, b) => (a.last_seen < b.last_seen ? 1 : a.last_seen > b.last_seen ? -1 : 0));
    const token = ++this.drawToken;
    const gen = this.generation;
    const chunk = (from, to) => {
      const frag = document.createDocumentFragment();
      for (const r of rows.slice(from, to)) frag.append(flowRow(r));
      return frag;
    };
    this.tbody.replaceChildren(chunk(0, FIRST_ROWS));
    this.drawStatus();
    if (!performance.getEntriesByName(`flows-drawn-${gen}`).length) {
      // What the bench (bench/console_page.py) times: the first rows painted, and all of them.
      requestAnimationFrame(() => setTimeout(() => performance.mark(`flows-drawn-${gen}`), 0));
    }
    const more = (from) => {
      if (token !== this.drawToken) return;  // redrawn since
      if (from >= rows.length) {
        if (complete) {
          requestAnimationFrame(() => setTimeout(() => performance.mark(`flows-all-${gen}`), 0));
        }
        return;
      }
      this.tbody.append(chunk(from, from + CHUNK_ROWS));
      setTimeout(() => more(from + CHUNK_ROWS), 0);
    };
    requestAnimationFrame(() => setTimeout(() => more(FIRST_ROWS), 0));
  }

  drawStatus() {
    const n = this.records.size;
    const live = this.status.dataset.stream === 'live' ? ' · live' : '';
    const parts = [`${n} flow${n === 1 ? '' : 's'}${n >= LIMIT ? ' (the newest)' : ''}${live}`];
    const st = this.stats;
    if (st && st.records !== undefined) {
      const size = (b) => (b < 2 ** 20 ? `${Math.ceil(b / 1024)} KB` : `${(b / 2 ** 20).toFixed(1)} MB`);
      parts.push(`console store: ${st.records} records, ${size(st.bytes)} of ${size(st.max_bytes)}`);
      const evicted = (st.evicted_records || 0) + (st.lost_to_subscribers || 0);
      if (evicted) parts.push(`${evicted} evicted or lost`);
    }
    this.status.replaceChildren(el('span', {}, parts.join(' · ')));
  }

  // Names for the filter fields' suggestions.
  namespaces() {
    const out = new Set();
    for (const r of this.records.values()) {
      for (const p of [r.source, r.destination]) if (p.includes('/')) out.add(p.split('/')[0]);
    }
    return [...out].sort();
  }
}
