"""ClusterNetworkPolicy (v1alpha2), AdminNetworkPolicy and BaselineAdminNetworkPolicy
(v1alpha1), and Nodes, from manifests into the model (enforcer.model.clusterpolicy).

Validation is what the CRDs' schemas and CEL rules do (the experimental channel, a superset of
the standard one): priority 0-1000; at most 25 (v1alpha2) or 100 (v1alpha1) rules per
direction; 1-25 (100) peers and protocols per rule; exactly one field in a subject, a peer, a
protocol and a port; ingress peers only `namespaces` and `pods`; 1-25 CIDRs and domain names;
ports 1-65535 and a v1alpha2 range with start < end; no named port in an egress rule with a
networks, nodes or domainNames peer; rule names up to 100 characters; a
BaselineAdminNetworkPolicy named `default`. Fields the schema does not know are pruned by the
API server, so they are ignored here too (a peer left with no field is an error, as there).
Each error names the file, the object and the field, and nothing of the object is read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from ipaddress import ip_network
from typing import Any

from enforcer.model.clusterpolicy import (
    ACCEPT,
    ADMIN,
    BASELINE,
    DENY,
    KIND_ADMIN_NETWORK_POLICY,
    KIND_BASELINE_ADMIN_NETWORK_POLICY,
    KIND_CLUSTER_NETWORK_POLICY,
    MAX_PRIORITY,
    MIN_PRIORITY,
    PASS,
    TIERS,
    V1ALPHA1,
    V1ALPHA2,
    ClusterPeer,
    ClusterPolicy,
    ClusterPort,
    ClusterRule,
    NamespacedPods,
    Subject,
)
from enforcer.model.nodes import KIND_NODE, Node, node_addresses
from enforcer.model.objects import PROTOCOLS, IPNetwork
from enforcer.model.parse import (
    CORE_API,
    ValidationError,
    _Ctx,
    _metadata,
    _object_ref,
    _port_name,
    _selector,
)

_DOMAIN_NAME = re.compile(
    r"^(\*\.)?([a-zA-z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.)+[a-zA-z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.?$"
)
_RULE_NAME_MAX = 100
_CIDR_MAX_LENGTH = 43
_LIST_MAX_V2 = 25  # rules per direction, peers, protocols (v1alpha2)
_LIST_MAX_V1 = 100  # the same in v1alpha1
_ADDRESS_LIST_MAX = 25  # networks and domainNames, both versions
_V1_ACTIONS = {"Allow": ACCEPT, "Deny": DENY, "Pass": PASS}


def parse_cluster_object(
    obj: Mapping[str, Any], origin: str = "<input>"
) -> ClusterPolicy | Node | None:
    """A cluster-scoped policy or a Node; None for anything else. Raises ValidationError."""
    if not isinstance(obj, Mapping):
        return None
    kind, api = obj.get("kind"), obj.get("apiVersion")
    _, name = _object_ref(obj)
    if kind == KIND_NODE and api == CORE_API:
        return _node(_Ctx(origin, KIND_NODE, None, name), obj)
    if kind == KIND_CLUSTER_NETWORK_POLICY and api == V1ALPHA2:
        return _Parser(_Ctx(origin, kind, None, name), v1=False).policy(obj)
    if kind in (KIND_ADMIN_NETWORK_POLICY, KIND_BASELINE_ADMIN_NETWORK_POLICY) and api == V1ALPHA1:
        return _Parser(_Ctx(origin, str(kind), None, name), v1=True).policy(obj)
    return None


def _node(ctx: _Ctx, obj: Mapping[str, Any]) -> Node:
    name, _, _, labels = _metadata(ctx, obj, namespaced=False)
    status = ctx.mapping(obj.get("status"), "status")
    addresses = ctx.seq(status.get("addresses"), "status.addresses")
    return Node(name=name, labels=labels, addresses=node_addresses(list(addresses)))


class _Parser:
    def __init__(self, ctx: _Ctx, v1: bool) -> None:
        self.ctx = ctx
        self.v1 = v1
        self.list_max = _LIST_MAX_V1 if v1 else _LIST_MAX_V2

    # --- helpers ---------------------------------------------------------------------------

    def items(self, raw: Any, field: str, *, required: bool, limit: int) -> Sequence[Any]:
        """A list with the schema's minItems 1 (when given) and maxItems."""
        if raw is None:
            if required:
                self.ctx.fail(field, "required value")
            return ()
        items = self.ctx.seq(raw, field)
        if not items:
            self.ctx.fail(field, "must have at least 1 item")
        if len(items) > limit:
            self.ctx.fail(field, f"must have at most {limit} items, has {len(items)}")
        return items

    def one_of(self, value: Mapping[str, Any], field: str, allowed: Sequence[str]) -> str:
        """The one known field set (minProperties/maxProperties 1 after pruning)."""
        present = [k for k in allowed if k in value and value[k] is not None]
        if len(present) != 1:
            got = f"got {', '.join(present)}" if present else "got none"
            unknown = [k for k in value if k not in allowed]
            hint = f" ({', '.join(map(str, unknown))} not allowed here)" if unknown else ""
            self.ctx.fail(field, f"must set exactly one of {', '.join(allowed)}: {got}{hint}")
        return present[0]

    def integer(self, raw: Any, field: str, low: int, high: int) -> int:
        if raw is None:
            self.ctx.fail(field, "required value")
        if isinstance(raw, bool) or not isinstance(raw, int):
            self.ctx.fail(field, f"must be an integer, got {raw!r}")
        if not low <= raw <= high:
            self.ctx.fail(field, f"{raw} out of range {low}-{high}")
        return raw

    # --- the object ------------------------------------------------------------------------

    def policy(self, obj: Mapping[str, Any]) -> ClusterPolicy:
        ctx = self.ctx
        name, _, uid, _ = _metadata(ctx, obj, namespaced=False)
        ctx.name = name
        kind = ctx.kind
        if obj.get("spec") is None:
            ctx.fail("spec", "required value")
        spec = ctx.mapping(obj.get("spec"), "spec")
        priority: int | None
        if kind == KIND_BASELINE_ADMIN_NETWORK_POLICY:
            if name != "default":
                ctx.fail("metadata.name", 'Only one baseline admin network policy with '
                         'metadata.name="default" can be created in the cluster')
            tier, priority = BASELINE, None
        else:
            priority = self.integer(spec.get("priority"), "spec.priority", MIN_PRIORITY,
                                    MAX_PRIORITY)
            tier = ADMIN
            if kind == KIND_CLUSTER_NETWORK_POLICY:
                raw_tier = spec.get("tier")
                if raw_tier is None:
                    ctx.fail("spec.tier", "required value")
                if raw_tier not in TIERS:
                    ctx.fail("spec.tier",
                             f"unsupported value {raw_tier!r}: use Admin or Baseline")
                tier = str(raw_tier)
        if spec.get("subject") is None:
            ctx.fail("spec.subject", "required value")
        subject = self.subject(spec["subject"], "spec.subject")
        actions = self.actions(kind)
        ingress = self.rules(spec.get("ingress"), "spec.ingress", "from", actions)
        egress = self.rules(spec.get("egress"), "spec.egress", "to", actions)
        return ClusterPolicy(kind=kind, name=name, tier=tier, priority=priority,
                             subject=subject, ingress=ingress, egress=egress, uid=uid)

    def actions(self, kind: str) -> Mapping[str, str]:
        if kind == KIND_CLUSTER_NETWORK_POLICY:
            return {ACCEPT: ACCEPT, DENY: DENY, PASS: PASS}
        if kind == KIND_ADMIN_NETWORK_POLICY:
            return _V1_ACTIONS
        return {"Allow": ACCEPT, "Deny": DENY}

    def subject(self, raw: Any, field: str) -> Subject:
        value = self.ctx.mapping(raw, field)
        which = self.one_of(value, field, ("namespaces", "pods"))
        if which == "namespaces":
            return Subject(namespaces=_selector(self.ctx, value["namespaces"],
                                                f"{field}.namespaces"))
        return Subject(pods=self.namespaced_pods(value["pods"], f"{field}.pods"))

    def namespaced_pods(self, raw: Any, field: str) -> NamespacedPods:
        value = self.ctx.mapping(raw, field)
        if value.get("podSelector") is None:
            self.ctx.fail(f"{field}.podSelector", "required value")
        if self.v1 and value.get("namespaceSelector") is None:
            self.ctx.fail(f"{field}.namespaceSelector", "required value")
        return NamespacedPods(
            namespace_selector=_selector(self.ctx, value.get("namespaceSelector"),
                                         f"{field}.namespaceSelector"),
            pod_selector=_selector(self.ctx, value["podSelector"], f"{field}.podSelector"),
        )

    # --- rules -----------------------------------------------------------------------------

    def rules(
        self, raw: Any, field: str, peers_key: str, actions: Mapping[str, str]
    ) -> tuple[ClusterRule, ...]:
        items = self.ctx.seq(raw, field)
        if len(items) > self.list_max:
            self.ctx.fail(field, f"must have at most {self.list_max} rules, has {len(items)}")
        return tuple(
            self.rule(item, f"{field}[{i}]", peers_key, actions) for i, item in enumerate(items)
        )

    def rule(
        self, raw: Any, field: str, peers_key: str, actions: Mapping[str, str]
    ) -> ClusterRule:
        ctx = self.ctx
        value = ctx.mapping(raw, field)
        name = value.get("name") or ""
        name = ctx.string(name, f"{field}.name")
        if len(name) > _RULE_NAME_MAX:
            ctx.fail(f"{field}.name", f"may not be longer than {_RULE_NAME_MAX} characters")
        action = value.get("action")
        if action is None:
            ctx.fail(f"{field}.action", "required value")
        if action not in actions:
            ctx.fail(f"{field}.action",
                     f"unsupported value {action!r}: use {', '.join(actions)}")
        egress = peers_key == "to"
        raw_peers = self.items(value.get(peers_key), f"{field}.{peers_key}", required=True,
                               limit=self.list_max)
        peers = tuple(self.peer(p, f"{field}.{peers_key}[{j}]", egress)
                      for j, p in enumerate(raw_peers))
        ports_key = "ports" if self.v1 else "protocols"
        raw_ports = self.items(value.get(ports_key), f"{field}.{ports_key}", required=False,
                               limit=self.list_max)
        ports = tuple(self.port(p, f"{field}.{ports_key}[{j}]") for j, p in enumerate(raw_ports))
        if egress and any(p.named for p in ports):
            no_names = [p.field for p in peers if p.field in ("networks", "nodes", "domainNames")]
            if no_names:
                ctx.fail(f"{field}", f"{'/'.join(dict.fromkeys(no_names))} peer cannot be set "
                         "with namedPorts since there are no namedPorts for "
                         "networks/nodes/domainNames")
        return ClusterRule(name=name, action=actions[action], peers=peers, ports=ports or None)

    def peer(self, raw: Any, field: str, egress: bool) -> ClusterPeer:
        ctx = self.ctx
        value = ctx.mapping(raw, field)
        allowed: tuple[str, ...] = ("namespaces", "pods")
        if egress:
            allowed += ("nodes", "networks")
            if not (self.v1 and ctx.kind == KIND_BASELINE_ADMIN_NETWORK_POLICY):
                allowed += ("domainNames",)
        which = self.one_of(value, field, allowed)
        where = f"{field}.{which}"
        if which == "namespaces":
            return ClusterPeer(namespaces=_selector(ctx, value[which], where))
        if which == "pods":
            return ClusterPeer(pods=self.namespaced_pods(value[which], where))
        if which == "nodes":
            return ClusterPeer(nodes=_selector(ctx, value[which], where))
        items = self.items(value[which], where, required=True, limit=_ADDRESS_LIST_MAX)
        seen: set[Any] = set()
        for i, item in enumerate(items):  # listType=set: no value twice
            if isinstance(item, str) and item in seen:
                ctx.fail(f"{where}[{i}]", f"Duplicate value: {item!r}")
            seen.add(item)
        if which == "networks":
            return ClusterPeer(networks=tuple(
                self.cidr(c, f"{where}[{i}]") for i, c in enumerate(items)))
        names = []
        for i, item in enumerate(items):
            text = ctx.string(item, f"{where}[{i}]")
            if not _DOMAIN_NAME.match(text):
                ctx.fail(f"{where}[{i}]", f"invalid domain name {text!r}: an exact name, or "
                         "`*.` and a name")
            names.append(text)
        return ClusterPeer(domain_names=tuple(names))

    def cidr(self, raw: Any, field: str) -> IPNetwork:
        text = self.ctx.string(raw, field)
        if len(text) > _CIDR_MAX_LENGTH:
            self.ctx.fail(field, f"may not be longer than {_CIDR_MAX_LENGTH} characters")
        if "/" not in text:
            self.ctx.fail(field, f"Invalid CIDR format provided: {text!r}")
        try:
            # isCIDR accepts host bits (netip.ParsePrefix); the prefix is what matches.
            return ip_network(text, strict=False)
        except ValueError:
            self.ctx.fail(field, f"Invalid CIDR format provided: {text!r}")

    # --- ports -----------------------------------------------------------------------------

    def port(self, raw: Any, field: str) -> ClusterPort:
        return self.v1_port(raw, field) if self.v1 else self.protocol(raw, field)

    def protocol(self, raw: Any, field: str) -> ClusterPort:
        ctx = self.ctx
        value = ctx.mapping(raw, field)
        which = self.one_of(value, field, ("tcp", "udp", "sctp", "destinationNamedPort"))
        where = f"{field}.{which}"
        if which == "destinationNamedPort":
            name = ctx.string(value[which], where)
            return ClusterPort(named=_port_name(ctx, name, where))
        proto = ctx.mapping(value[which], where)
        if proto.get("destinationPort") is None:
            ctx.fail(where, "must have at least 1 property: destinationPort")
        where = f"{where}.destinationPort"
        port = ctx.mapping(proto["destinationPort"], where)
        kind = self.one_of(port, where, ("number", "range"))
        if kind == "number":
            number = self.integer(port["number"], f"{where}.number", 1, 65535)
            return ClusterPort(protocol=which.upper(), start=number, end=number)
        span = ctx.mapping(port["range"], f"{where}.range")
        start = self.integer(span.get("start"), f"{where}.range.start", 1, 65535)
        end = self.integer(span.get("end"), f"{where}.range.end", 1, 65535)
        if not start < end:
            ctx.fail(f"{where}.range", "Start port must be less than End port")
        return ClusterPort(protocol=which.upper(), start=start, end=end)

    def v1_port(self, raw: Any, field: str) -> ClusterPort:
        ctx = self.ctx
        value = ctx.mapping(raw, field)
        which = self.one_of(value, field, ("portNumber", "namedPort", "portRange"))
        where = f"{field}.{which}"
        if which == "namedPort":
            return ClusterPort(named=_port_name(ctx, ctx.string(value[which], where), where))
        port = ctx.mapping(value[which], where)
        protocol = port.get("protocol")
        protocol = "TCP" if protocol is None else protocol  # the schema's default
        if protocol not in PROTOCOLS:
            ctx.fail(f"{where}.protocol", f"unsupported protocol {protocol!r}: use TCP, UDP "
                     "or SCTP")
        if which == "portNumber":
            number = self.integer(port.get("port"), f"{where}.port", 1, 65535)
            return ClusterPort(protocol=protocol, start=number, end=number)
        # v1alpha1 has no start < end rule: a range with start > end matches no port.
        start = self.integer(port.get("start"), f"{where}.start", 1, 65535)
        end = self.integer(port.get("end"), f"{where}.end", 1, 65535)
        return ClusterPort(protocol=protocol, start=start, end=end)


__all__ = ["ValidationError", "parse_cluster_object"]
