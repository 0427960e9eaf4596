"""The console: every node's flows merged cluster-wide, the cluster's policies, a JSON API
and the web page (`enforcer console`).

Modules, one job each: `agents` finds the agents (the DaemonSet's pods, or a lab's nodes),
`collector` follows each agent's flows and status into one FlowStore, `cluster` keeps the
cluster's objects (from the same sources the agent uses), `graph` and `policies` make the map
and the policy view, `http` serves them, `service` puts them together.

JSON API (every answer is JSON; a bad parameter is 400 `{"error": message}`):

- `GET /api/flows?FILTERS&since=UNIX&limit=N` ->
  `{"flows": [record, ...], "stats": {...}}`, oldest first, the newest N (default 1,000;
  `limit=0` everything held). FILTERS are `enforcer flows`' (FlowFilter.to_query: namespace,
  pod, from, to, port, protocol, verdict, policy, direction; a repeated parameter ORs its
  values, different parameters AND). A record is `enforcer flows -o json`'s object plus
  `"why"`, the verdict in words. `stats`: the store's records, bytes, evicted_records,
  evicted_buckets, lost_to_subscribers, and max_bytes.
- `GET /api/flows/stream?FILTERS` -> `text/event-stream`: the comment `: connected\\n\\n`, then
  `data: RECORD\\n\\n` for every new record that matches (with `why`), and `: keepalive\\n\\n`
  after 15 s without one.
- `GET /api/nodes` -> `{"nodes": [{"name", "reachable", "error", "last_record", "ready",
  "endpoints", "inexact_resumes", "lost"}]}`: reachable (bool) as of the last contact with its
  agent and the error that broke it (or null), the newest record merged from it (RFC 3339 or
  null), from its agent's last /status: ready (bool or null) and the number of endpoints (or
  null); the reconnects its agent's replay ring no longer covered (counts may be merged twice)
  and the records its agent numbered but never sent (see `collector`).
- `GET /api/graph?namespace=NS&since=UNIX` (namespace repeatable) -> `{"nodes": [{"id",
  "label", "namespace", "kind": "workload"|"external"}], "edges": [{"source", "target", "port",
  "protocol", "verdict", "count", "policies"}]}`: a node per workload (id `namespace/name`) or
  peer outside the cluster (id its address, namespace null); an edge per (source, target,
  port, protocol, verdict), the verdict `allowed`, `denied`, `audit`, or `would-deny` /
  `would-allow` when staged policies would change it; with namespaces, only edges with an end
  in one of them.
- `GET /api/policies` -> `{"policies": [{"key": "ns/name", "kind": "NetworkPolicy" |
  "StagedNetworkPolicy", "selects": ["ns/pod", ...]}]}`.
- `GET /api/policies/NS/NAME[?kind=StagedNetworkPolicy]` -> `{"key", "kind", "spec", "selects",
  "matrix": [{"port", "protocol", "matrix": {src: {dst: bool}}}, ...], "flows": [record, ...]}`:
  the manifest's spec, the pods it selects, one reachability matrix (`enforcer analyze`'s: rows
  sources, columns destinations, every pod) per port the selected pods declare (a staged
  policy's as if it were applied), and the most recent records naming it (among the deciding
  policies; for a staged policy, among the staged ones), newest last. 404 `{"error"}` when
  there is no such policy.
- `GET /healthz` -> `ok` (the Deployment's probes).
- `GET /` the page (`static/index.html`), `GET /static/FILE` the files under `static/`.
"""
