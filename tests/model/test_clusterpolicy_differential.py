"""Differential test: random mixes of cluster-scoped policies (v1alpha2 and v1alpha1) and
NetworkPolicies, the model's verdicts against a brute-force evaluator written here.

The cases are drawn as plain data; the model reads them as manifests (the loader, the parsers,
the indexed state and the evaluator), the brute force below interprets the same data directly
by scanning everything, following the API's text: per direction, the Admin tier by priority
(ties by name, then ClusterNetworkPolicy before AdminNetworkPolicy), rules in order, first
match decides (Pass goes on); then NetworkPolicy if one isolates the pod; then the Baseline
tier (a BaselineAdminNetworkPolicy after every priority); then allow.
"""

from __future__ import annotations

import json
from ipaddress import ip_address, ip_network
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enforcer.analysis.inputs import planned_state
from enforcer.model.evaluate import PairEvaluator, evaluate_ip
from enforcer.model.loader import load_text

SA_LABEL = "policy.enforcer.dev/serviceaccount"
NODES = {"n1": ({"role": "a"}, "192.168.0.1"), "n2": ({"role": "b"}, "192.168.0.2")}
PROBES = [(80, "TCP"), (8080, "TCP"), (53, "UDP"), (9003, "SCTP")]
OUTSIDE = ["192.168.0.2", "203.0.113.5"]
Data = dict[str, Any]

# --- drawing the cases ----------------------------------------------------------------------

def _expression(keys: list[str], values: list[str]) -> Any:
    return st.builds(lambda k, op, v: {"matchExpressions": [
        {"key": k, "operator": op, **({"values": [v]} if op in ("In", "NotIn") else {})}]},
        st.sampled_from(keys), st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]),
        st.sampled_from(values))


pod_selector_st = st.one_of(
    st.just({}),
    st.builds(lambda v: {"matchLabels": {"app": v}}, st.sampled_from(["x", "y"])),
    st.builds(lambda v: {"matchLabels": {SA_LABEL: v}}, st.sampled_from(["sa1", "forged"])),
    _expression(["app", SA_LABEL], ["x", "sa2"]),
)
ns_selector_st = st.one_of(
    st.just({}),
    st.builds(lambda v: {"matchLabels": {"team": v}}, st.sampled_from(["a", "b"])),
    st.builds(lambda v: {"matchLabels": {"kubernetes.io/metadata.name": v}},
              st.sampled_from(["ns1", "ns2"])),
    _expression(["team"], ["a"]),
)


@st.composite
def pod_st(draw: Any, index: int) -> Data:
    host = index == 0 and draw(st.booleans())
    return {
        "name": f"p{index}",
        "namespace": draw(st.sampled_from(["ns1", "ns2"])),
        "labels": draw(st.dictionaries(st.just("app"), st.sampled_from(["x", "y"]))),
        "sa": draw(st.sampled_from(["sa1", "sa2"])),
        "node": draw(st.sampled_from(list(NODES))),
        "host": host,
        "ports": draw(st.lists(st.sampled_from([("web", 80, "TCP"), ("web", 8080, "TCP"),
                                                ("dns", 53, "UDP"), (None, 9003, "SCTP")]),
                               max_size=3, unique=True)),
    }


port_st = st.one_of(
    st.builds(lambda p, n: {"protocol": p, "start": n, "end": n},
              st.sampled_from(["TCP", "UDP", "SCTP"]), st.sampled_from([53, 80, 9003])),
    st.builds(lambda p: {"protocol": p, "start": 50, "end": 100}, st.sampled_from(["TCP", "UDP"])),
    st.builds(lambda name: {"named": name}, st.sampled_from(["web", "dns"])),
)
ns_peer_st = st.one_of(
    st.builds(lambda s: {"namespaces": s}, ns_selector_st),
    st.builds(lambda n, p: {"pods": {"namespaceSelector": n, "podSelector": p}},
              ns_selector_st, pod_selector_st),
)
address_peer_st = st.one_of(
    st.builds(lambda nets: {"networks": nets}, st.lists(st.sampled_from(
        ["10.0.0.0/30", "10.0.0.4/32", "0.0.0.0/0", "::/0", "192.168.0.0/31"]),
        min_size=1, max_size=2, unique=True)),
    st.builds(lambda s: {"nodes": s}, st.one_of(st.just({}), st.sampled_from(
        [{"matchLabels": {"role": "a"}}, {"matchLabels": {"role": "b"}}]))),
    st.just({"domainNames": ["example.com"]}),
)


@st.composite
def cluster_rule_st(draw: Any, egress: bool, actions: list[str]) -> Data:
    peers = draw(st.lists(st.one_of(ns_peer_st, address_peer_st) if egress else ns_peer_st,
                          min_size=1, max_size=2))
    addresses = any(set(p) & {"networks", "nodes", "domainNames"} for p in peers)
    ports = draw(st.one_of(st.none(), st.none(), st.lists(port_st, min_size=1, max_size=2)))
    if ports and addresses:
        ports = [p for p in ports if "named" not in p] or None
    return {"action": draw(st.sampled_from(actions)), "peers": peers, "ports": ports,
            "name": f"r{draw(st.integers(0, 9))}"}


@st.composite
def cluster_policy_st(draw: Any, index: int, priority: int) -> Data:
    kind = draw(st.sampled_from(["ClusterNetworkPolicy"] * 3 + ["AdminNetworkPolicy"]))
    tier = draw(st.sampled_from(["Admin", "Baseline", "Admin"])) if kind == "ClusterNetworkPolicy" \
        else "Admin"
    actions = ["Accept", "Deny", "Pass"]
    subject = draw(ns_peer_st)
    return {
        "kind": kind, "tier": tier, "name": draw(st.sampled_from(["a", "b", "c"])) + str(index),
        "priority": priority, "subject": subject,
        "ingress": draw(st.lists(cluster_rule_st(False, actions), min_size=1, max_size=2)),
        "egress": draw(st.lists(cluster_rule_st(True, actions), min_size=1, max_size=2)),
    }


@st.composite
def banp_st(draw: Any) -> Data:
    actions = ["Accept", "Deny"]
    egress = [r for r in draw(st.lists(cluster_rule_st(True, actions), max_size=2))
              if not any("domainNames" in p for p in r["peers"])]
    return {"kind": "BaselineAdminNetworkPolicy", "tier": "Baseline", "name": "default",
            "priority": None, "subject": {"namespaces": draw(ns_selector_st)},
            "ingress": draw(st.lists(cluster_rule_st(False, actions), max_size=2)),
            "egress": egress}


np_peer_st = st.one_of(
    st.builds(lambda s: {"podSelector": s}, pod_selector_st),
    st.builds(lambda s: {"namespaceSelector": s}, ns_selector_st),
    st.builds(lambda c: {"ipBlock": {"cidr": c}}, st.sampled_from(["10.0.0.0/30",
                                                                     "192.168.0.0/24"])),
)
np_rule_st = st.builds(
    lambda peers, ports: {"peers": peers, "ports": ports},
    st.none() | st.lists(np_peer_st, min_size=1, max_size=2),
    st.none() | st.lists(st.builds(lambda p, n: {"protocol": p, "port": n},
                                   st.sampled_from(["TCP", "UDP"]),
                                   st.sampled_from([80, 53, "web", "dns"])),
                         min_size=1, max_size=2),
)


@st.composite
def network_policy_st(draw: Any, index: int) -> Data:
    return {"name": f"np{index}", "namespace": draw(st.sampled_from(["ns1", "ns2"])),
            "podSelector": draw(pod_selector_st),
            "types": draw(st.sampled_from([["Ingress"], ["Egress"], ["Ingress", "Egress"]])),
            "ingress": draw(st.lists(np_rule_st, max_size=2)),
            "egress": draw(st.lists(np_rule_st, max_size=2))}


@st.composite
def case_st(draw: Any) -> Data:
    npods = draw(st.integers(2, 5))
    ncp = draw(st.integers(2, 5))
    # Distinct priorities in a random order, and now and then a tie (ordered by name).
    priorities = draw(st.permutations([10, 20, 30, 40, 50]))
    if draw(st.booleans()):
        priorities[1] = priorities[0]
    return {
        "namespaces": {"ns1": draw(st.dictionaries(st.just("team"), st.sampled_from(["a", "b"]))),
                       "ns2": draw(st.dictionaries(st.just("team"), st.sampled_from(["a", "b"])))},
        "pods": [draw(pod_st(i)) for i in range(npods)],
        "cluster": [draw(cluster_policy_st(i, priorities[i])) for i in range(ncp)]
        + ([draw(banp_st())] if draw(st.booleans()) else []),
        "nps": [draw(network_policy_st(i)) for i in range(draw(st.integers(0, 2)))],
    }


def pod_ip(pod: Data, index: int) -> str:
    return NODES[pod["node"]][1] if pod["host"] else f"10.0.0.{index + 1}"


# --- the case as manifests, for the model ---------------------------------------------------


def _cnp_ports(ports: list[Data] | None) -> dict[str, Any]:
    if not ports:
        return {}
    out = []
    for p in ports:
        if "named" in p:
            out.append({"destinationNamedPort": p["named"]})
        elif p["start"] == p["end"]:
            out.append({p["protocol"].lower(): {"destinationPort": {"number": p["start"]}}})
        else:
            out.append({p["protocol"].lower(): {"destinationPort": {"range": {
                "start": p["start"], "end": p["end"]}}}})
    return {"protocols": out}


def _anp_ports(ports: list[Data] | None) -> dict[str, Any]:
    if not ports:
        return {}
    out = []
    for p in ports:
        if "named" in p:
            out.append({"namedPort": p["named"]})
        elif p["start"] == p["end"]:
            out.append({"portNumber": {"protocol": p["protocol"], "port": p["start"]}})
        else:
            out.append({"portRange": {"protocol": p["protocol"], "start": p["start"],
                                      "end": p["end"]}})
    return {"ports": out}


def manifests(case: Data) -> list[Data]:
    out: list[Data] = []
    for name, labels in case["namespaces"].items():
        out.append({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": name, "labels": labels}})
    for name, (labels, ip) in NODES.items():
        out.append({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name,
                    "labels": labels}, "status": {"addresses": [
                        {"type": "InternalIP", "address": ip}, {"type": "Hostname",
                                                               "address": name}]}})
    for i, pod in enumerate(case["pods"]):
        out.append({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"namespace": pod["namespace"], "name": pod["name"],
                                 "labels": {**pod["labels"], SA_LABEL: "forged"}},
                    "spec": {"serviceAccountName": pod["sa"], "nodeName": pod["node"],
                             "hostNetwork": pod["host"], "containers": [{"name": "c", "ports": [
                                 {"containerPort": n, "protocol": p, **({"name": nm} if nm else {})}
                                 for nm, n, p in pod["ports"]]}]},
                    "status": {"phase": "Running", "podIP": pod_ip(pod, i)}})
    for cp in case["cluster"]:
        v1 = cp["kind"] != "ClusterNetworkPolicy"
        ports = _anp_ports if v1 else _cnp_ports
        actions = {"Accept": "Allow"} if v1 else {}
        spec: Data = {"subject": cp["subject"]}
        if cp["kind"] == "ClusterNetworkPolicy":
            spec["tier"] = cp["tier"]
        if cp["priority"] is not None:
            spec["priority"] = cp["priority"]
        for direction, key in (("ingress", "from"), ("egress", "to")):
            if cp[direction]:
                spec[direction] = [{"name": r["name"], "action": actions.get(r["action"],
                                                                             r["action"]),
                                    key: r["peers"], **ports(r["ports"])}
                                   for r in cp[direction]]
        api = "v1alpha1" if v1 else "v1alpha2"
        out.append({"apiVersion": f"policy.networking.k8s.io/{api}", "kind": cp["kind"],
                    "metadata": {"name": cp["name"]}, "spec": spec})
    for np in case["nps"]:
        spec = {"podSelector": np["podSelector"], "policyTypes": np["types"]}
        for direction, key in (("ingress", "from"), ("egress", "to")):
            spec[direction] = [{**({key: r["peers"]} if r["peers"] else {}),
                                **({"ports": r["ports"]} if r["ports"] else {})}
                               for r in np[direction]]
        out.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "metadata": {"namespace": np["namespace"], "name": np["name"]},
                    "spec": spec})
    return out


# --- the brute force --------------------------------------------------------------------------


def bf_selects(sel: Data, labels: dict[str, str]) -> bool:
    for key, value in sel.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in sel.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


class BruteForce:
    def __init__(self, case: Data) -> None:
        self.case = case
        self.pods = {f"{p['namespace']}/{p['name']}": (i, p) for i, p in enumerate(case["pods"])}

    def ns_labels(self, ns: str) -> dict[str, str]:
        return {**self.case["namespaces"][ns], "kubernetes.io/metadata.name": ns}

    def pod_labels(self, pod: Data) -> dict[str, str]:
        return {**pod["labels"], SA_LABEL: pod["sa"]}  # the account, never the forged label

    def ips(self, key: str | None, ip: str | None) -> list[str]:
        if key is None:
            return [ip or ""]
        index, pod = self.pods[key]
        return [pod_ip(pod, index)]

    def in_ns_pods(self, peer: Data, pod: Data | None) -> bool:
        if pod is None or pod["host"]:
            return False
        if "namespaces" in peer:
            return bf_selects(peer["namespaces"], self.ns_labels(pod["namespace"]))
        sel = peer["pods"]
        return (bf_selects(sel["namespaceSelector"], self.ns_labels(pod["namespace"]))
                and bf_selects(sel["podSelector"], self.pod_labels(pod)))

    def cluster_peer(self, peer: Data, pod: Data | None, ips: list[str]) -> bool:
        if "namespaces" in peer or "pods" in peer:
            return self.in_ns_pods(peer, pod)
        if "networks" in peer:
            return any(ip_address(ip) in ip_network(net) for ip in ips for net in peer["networks"]
                       if ip_address(ip).version == ip_network(net).version)
        if "nodes" in peer:
            return any(ip == addr for labels, addr in NODES.values()
                       if bf_selects(peer["nodes"], labels) for ip in ips)
        return False  # domainNames

    def port_ok(self, ports: list[Data] | None, port: int, proto: str, dst: Data | None) -> bool:
        if not ports:
            return True
        for p in ports:
            if "named" in p:
                if dst is not None and any(nm == p["named"] and n == port and pr == proto
                                           for nm, n, pr in dst["ports"]):
                    return True
            elif p["protocol"] == proto and p["start"] <= port <= p["end"]:
                return True
        return False

    def tier(self, tier: str, pod: Data, direction: str, remote: Data | None, ips: list[str],
             dst: Data | None, port: int, proto: str) -> str | None:
        rank = {"ClusterNetworkPolicy": 0, "AdminNetworkPolicy": 1,
                "BaselineAdminNetworkPolicy": 2}
        policies = sorted(
            (cp for cp in self.case["cluster"] if cp["tier"] == tier and cp[direction]
             and self.in_ns_pods(cp["subject"], pod)),
            key=lambda cp: (1001 if cp["priority"] is None else cp["priority"], cp["name"],
                            rank[cp["kind"]]))
        for cp in policies:
            for r in cp[direction]:
                if self.port_ok(r["ports"], port, proto, dst) and any(
                        self.cluster_peer(peer, remote, ips) for peer in r["peers"]):
                    return str(r["action"])
        return None

    def np_peer(self, np: Data, peer: Data, remote: Data | None, ips: list[str]) -> bool:
        if "ipBlock" in peer:
            return any(ip_address(ip) in ip_network(peer["ipBlock"]["cidr"]) for ip in ips
                       if ip_address(ip).version == 4)
        if remote is None or remote["host"]:
            return False
        if "namespaceSelector" in peer:
            return bf_selects(peer["namespaceSelector"], self.ns_labels(remote["namespace"]))
        return remote["namespace"] == np["namespace"] and bf_selects(
            peer["podSelector"], self.pod_labels(remote))

    def np_port(self, ports: list[Data] | None, port: int, proto: str, dst: Data | None) -> bool:
        if not ports:
            return True
        for p in ports:
            if p["protocol"] != proto:
                continue
            if isinstance(p["port"], int) and p["port"] == port:
                return True
            if isinstance(p["port"], str) and dst is not None and any(
                    nm == p["port"] and n == port and pr == proto for nm, n, pr in dst["ports"]):
                return True
        return False

    def direction(self, pod: Data, direction: str, remote: Data | None, ips: list[str],
                  dst: Data | None, port: int, proto: str) -> bool:
        if pod["host"]:
            return True  # not an endpoint: nothing applies
        admin = self.tier("Admin", pod, direction, remote, ips, dst, port, proto)
        if admin in ("Accept", "Deny"):
            return admin == "Accept"
        nps = [np for np in self.case["nps"] if np["namespace"] == pod["namespace"]
               and direction.capitalize() in np["types"]
               and bf_selects(np["podSelector"], self.pod_labels(pod))]
        if nps:
            return any(self.np_port(r["ports"], port, proto, dst)
                       and (not r["peers"] or any(self.np_peer(np, peer, remote, ips)
                                                  for peer in r["peers"]))
                       for np in nps for r in np[direction])
        baseline = self.tier("Baseline", pod, direction, remote, ips, dst, port, proto)
        return baseline != "Deny"

    def allowed(self, src: str, dst: str, port: int, proto: str) -> bool:
        (si, s), (di, d) = self.pods[src], self.pods[dst]
        if src == dst:
            return True
        egress = self.direction(s, "egress", d, [pod_ip(d, di)], d, port, proto)
        if s["host"] and s["node"] == d["node"]:
            return egress
        return egress and self.direction(d, "ingress", s, [pod_ip(s, si)], d, port, proto)

    def allowed_out(self, src: str, ip: str, port: int, proto: str) -> bool:
        return self.direction(self.pods[src][1], "egress", None, [ip], None, port, proto)

    def allowed_in(self, ip: str, dst: str, port: int, proto: str) -> bool:
        pod = self.pods[dst][1]
        return self.direction(pod, "ingress", None, [ip], pod, port, proto)


# --- the test -------------------------------------------------------------------------------


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case_st())
def test_model_equals_brute_force(case: Data) -> None:
    result = load_text(json.dumps(manifests(case)), "case.json")
    assert not result.errors, [str(e) for e in result.errors]
    assert not result.ignored
    state = planned_state(result)
    bf = BruteForce(case)
    pairs = PairEvaluator(state)
    keys = sorted(bf.pods)
    for port, proto in PROBES:
        for src in keys:
            for dst in keys:
                want = bf.allowed(src, dst, port, proto)
                got = pairs.verdict(src, dst, port, proto).allowed
                assert got == want, (src, dst, port, proto)
            if bf.pods[src][1]["host"]:
                continue
            for ip in OUTSIDE:
                if state.pods_by_ip(ip) is not None:
                    continue  # a pod's address: the pair above covers it
                want = bf.allowed_out(src, ip, port, proto)
                assert evaluate_ip(state, src, ip, port, proto).allowed == want, (src, ip)
                want = bf.allowed_in(ip, src, port, proto)
                got = evaluate_ip(state, src, ip, port, proto, "Ingress").allowed
                assert got == want, (ip, src)
