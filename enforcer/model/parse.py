"""Turn one Kubernetes object (a decoded manifest) into a model object.

Applies the API server's defaulting and validation for the fields the model uses. An invalid
object raises ValidationError naming the origin, the object and the field (a JSON path), and
nothing of it is returned: no partial objects.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from ipaddress import ip_address, ip_network
from typing import Any, NoReturn

from enforcer.model.groups import accepted_name, foreign_policy_group
from enforcer.model.objects import (
    DEFAULT_SERVICE_ACCOUNT,
    EGRESS,
    INGRESS,
    KIND_NAMESPACE,
    KIND_NETWORK_POLICY,
    KIND_POD,
    KIND_STAGED_NETWORK_POLICY,
    OPERATORS,
    POLICY_MODE_ANNOTATION,
    POLICY_MODES,
    PROTOCOLS,
    QUARANTINE_ANNOTATION,
    SERVICE_ACCOUNT_LABEL,
    STAGED_POLICY_API,
    ContainerPort,
    IPAddress,
    IPBlock,
    IPNetwork,
    LabelRequirement,
    LabelSelector,
    ModelObject,
    Namespace,
    NetworkPolicy,
    Pod,
    PolicyPeer,
    PolicyPort,
    PolicyRule,
)

NETWORK_POLICY_API = "networking.k8s.io/v1"
CORE_API = "v1"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


class ValidationError(Exception):
    """An object the API server would reject, with where and why."""

    def __init__(
        self,
        origin: str,
        kind: str,
        namespace: str | None,
        name: str | None,
        field: str,
        message: str,
    ) -> None:
        super().__init__(message)
        self.origin = origin
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.field = field
        self.message = message

    @property
    def object_ref(self) -> str:
        kind = self.kind or "object"
        if self.name is None:
            return f"{kind} (unnamed)"
        return f"{kind} {self.namespace}/{self.name}" if self.namespace else f"{kind} {self.name}"

    def __str__(self) -> str:
        where = f" field {self.field}:" if self.field else ""
        return f"{self.origin}: {self.object_ref}:{where} {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "field": self.field,
            "message": self.message,
        }


class _Ctx:
    """Where we are, so every error names origin, object and field."""

    def __init__(self, origin: str, kind: str, namespace: str | None, name: str | None) -> None:
        self.origin = origin
        self.kind = kind
        self.namespace = namespace
        self.name = name

    def fail(self, field: str, message: str) -> NoReturn:
        raise ValidationError(self.origin, self.kind, self.namespace, self.name, field, message)

    def mapping(self, value: Any, field: str) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(field, f"must be an object, got {type(value).__name__}")
        return value

    def seq(self, value: Any, field: str) -> Sequence[Any]:
        if value is None:
            return ()
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            self.fail(field, f"must be a list, got {type(value).__name__}")
        return value

    def string(self, value: Any, field: str) -> str:
        if not isinstance(value, str):
            self.fail(field, f"must be a string, got {type(value).__name__}")
        return value


def parse_object(
    obj: Mapping[str, Any], origin: str = "<input>", accept_groups: Collection[str] = ()
) -> ModelObject | None:
    """Parse one object. Returns None for kinds the model ignores; raises ValidationError.

    accept_groups: API groups whose NetworkPolicies are read as networking.k8s.io/v1 ones,
    named NAME.GROUP (enforcer.model.groups); never any by default."""
    if not isinstance(obj, Mapping):
        raise ValidationError(origin, "", None, None, "", "not an object")
    kind = obj.get("kind")
    api = obj.get("apiVersion")
    namespace, name = _object_ref(obj)
    if kind == KIND_NETWORK_POLICY and api == NETWORK_POLICY_API:
        ctx = _Ctx(origin, KIND_NETWORK_POLICY, namespace or "default", name)
        return _parse_policy(ctx, obj)
    group = foreign_policy_group(obj)
    if group and group in accept_groups:
        ctx = _Ctx(origin, f"{KIND_NETWORK_POLICY} ({api})", namespace or "default", name)
        return _accepted_policy(ctx, obj, group)
    if kind == KIND_POD and api == CORE_API:
        ctx = _Ctx(origin, KIND_POD, namespace or "default", name)
        return _parse_pod(ctx, obj)
    if kind == KIND_NAMESPACE and api == CORE_API:
        return _parse_namespace(_Ctx(origin, KIND_NAMESPACE, None, name), obj)
    return None


def parse_staged_policy(obj: Mapping[str, Any], origin: str = "<input>") -> NetworkPolicy | None:
    """A StagedNetworkPolicy as the NetworkPolicy it previews; None for any other object.

    Kept out of parse_object on purpose: whoever enforces what parse_object returns must never
    receive a staged policy. Its spec is validated by the NetworkPolicy code, so it gets the
    same errors, naming the kind StagedNetworkPolicy.
    """
    if not isinstance(obj, Mapping):
        return None
    if obj.get("kind") != KIND_STAGED_NETWORK_POLICY or obj.get("apiVersion") != STAGED_POLICY_API:
        return None  # e.g. Calico's projectcalico.org StagedNetworkPolicy: another spec
    namespace, name = _object_ref(obj)
    ctx = _Ctx(origin, KIND_STAGED_NETWORK_POLICY, namespace or "default", name)
    return _parse_policy(ctx, obj)


# --- metadata ---------------------------------------------------------------------------


def _object_ref(obj: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(namespace, name) as far as they are strings: for error messages before validation."""
    meta_raw = obj.get("metadata")
    meta = meta_raw if isinstance(meta_raw, Mapping) else {}
    name = meta.get("name") if isinstance(meta.get("name"), str) else None
    namespace = meta.get("namespace") if isinstance(meta.get("namespace"), str) else None
    return namespace, name


def _metadata(
    ctx: _Ctx, obj: Mapping[str, Any], namespaced: bool
) -> tuple[str, str, str, dict[str, str]]:
    meta = ctx.mapping(obj.get("metadata"), "metadata")
    name = meta.get("name")
    if not name:
        ctx.fail("metadata.name", "required value: every object needs a name")
    name = ctx.string(name, "metadata.name")
    if not _DNS_SUBDOMAIN.match(name) or len(name) > 253:
        ctx.fail("metadata.name", f"invalid name {name!r}: must be a lowercase DNS subdomain")
    namespace = ""
    if namespaced:
        namespace = ctx.string(meta.get("namespace") or "default", "metadata.namespace")
        if not _DNS_LABEL.match(namespace) or len(namespace) > 63:
            ctx.fail("metadata.namespace", f"invalid namespace {namespace!r}: not a DNS label")
    uid = meta.get("uid") or ""
    labels = _labels(ctx, meta.get("labels"), "metadata.labels")
    return name, namespace, str(uid), labels


def _label_key(ctx: _Ctx, raw: Any, field: str) -> str:
    key = ctx.string(raw, field)
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        ctx.fail(field, f"invalid label key {key!r}: prefix must be a DNS subdomain")
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        ctx.fail(field, f"invalid label key {key!r}")
    return key


def _label_value(ctx: _Ctx, raw: Any, field: str) -> str:
    if raw is None:
        return ""
    if isinstance(raw, bool | int | float):
        ctx.fail(field, f"label value must be a string, got {raw!r} (quote it in YAML)")
    value = ctx.string(raw, field)
    if value and (len(value) > 63 or not _LABEL_NAME.match(value)):
        ctx.fail(field, f"invalid label value {value!r}")
    return value


def _labels(ctx: _Ctx, raw: Any, field: str) -> dict[str, str]:
    labels = {}
    for key, value in ctx.mapping(raw, field).items():
        k = _label_key(ctx, key, f"{field}[{key}]")
        labels[k] = _label_value(ctx, value, f"{field}[{key}]")
    return labels


def _selector(ctx: _Ctx, raw: Any, field: str) -> LabelSelector:
    sel = ctx.mapping(raw, field)
    match_labels = _labels(ctx, sel.get("matchLabels"), f"{field}.matchLabels")
    reqs = []
    for i, item in enumerate(ctx.seq(sel.get("matchExpressions"), f"{field}.matchExpressions")):
        where = f"{field}.matchExpressions[{i}]"
        expr = ctx.mapping(item, where)
        key = _label_key(ctx, expr.get("key"), f"{where}.key")
        op = expr.get("operator")
        if op not in OPERATORS:
            ctx.fail(
                f"{where}.operator", f"unsupported operator {op!r}: use {', '.join(OPERATORS)}"
            )
        values = tuple(
            _label_value(ctx, v, f"{where}.values[{j}]")
            for j, v in enumerate(ctx.seq(expr.get("values"), f"{where}.values"))
        )
        if op in ("In", "NotIn") and not values:
            ctx.fail(f"{where}.values", f"must be non-empty when operator is {op}")
        if op in ("Exists", "DoesNotExist") and values:
            ctx.fail(f"{where}.values", f"must be empty when operator is {op}")
        reqs.append(LabelRequirement(key=key, operator=op, values=values))
    return LabelSelector(match_labels=match_labels, match_expressions=tuple(reqs))


# --- Namespace and Pod ------------------------------------------------------------------


def _parse_namespace(ctx: _Ctx, obj: Mapping[str, Any]) -> Namespace:
    name, _, uid, labels = _metadata(ctx, obj, namespaced=False)
    if not _DNS_LABEL.match(name) or len(name) > 63:
        ctx.fail("metadata.name", f"invalid namespace name {name!r}: not a DNS label")
    return Namespace(name=name, labels=labels, uid=uid, policy_mode=_policy_mode(obj))


def _protocol(ctx: _Ctx, raw: Any, field: str) -> str:
    protocol = "TCP" if raw is None else raw
    if protocol not in PROTOCOLS:
        ctx.fail(field, f"unsupported protocol {protocol!r}: use TCP, UDP or SCTP")
    return str(protocol)


def _port_number(ctx: _Ctx, raw: Any, field: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        ctx.fail(field, f"must be an integer, got {raw!r}")
    if not 1 <= raw <= 65535:
        ctx.fail(field, f"port {raw} out of range 1-65535")
    return raw


def _port_name(ctx: _Ctx, raw: str, field: str) -> str:
    if len(raw) > 15 or not _IANA_SVC_NAME.match(raw) or "--" in raw or not re.search("[a-z]", raw):
        ctx.fail(field, f"invalid port name {raw!r}: must be an IANA service name")
    return raw


def _parse_pod(ctx: _Ctx, obj: Mapping[str, Any]) -> Pod:
    name, namespace, uid, labels = _metadata(ctx, obj, namespaced=True)
    ctx.namespace, ctx.name = namespace, name
    spec = ctx.mapping(obj.get("spec"), "spec")
    status = ctx.mapping(obj.get("status"), "status")
    ports = []
    for kind in ("initContainers", "containers"):
        for i, c in enumerate(ctx.seq(spec.get(kind), f"spec.{kind}")):
            container = ctx.mapping(c, f"spec.{kind}[{i}]")
            for j, p in enumerate(ctx.seq(container.get("ports"), f"spec.{kind}[{i}].ports")):
                where = f"spec.{kind}[{i}].ports[{j}]"
                port = ctx.mapping(p, where)
                number = _port_number(ctx, port.get("containerPort"), f"{where}.containerPort")
                pname = port.get("name")
                if pname is not None:
                    pname = _port_name(ctx, ctx.string(pname, f"{where}.name"), f"{where}.name")
                proto = _protocol(ctx, port.get("protocol"), f"{where}.protocol")
                ports.append(ContainerPort(name=pname, port=number, protocol=proto))
    ips: list[IPAddress] = []
    raw_ips = [
        ctx.mapping(item, f"status.podIPs[{i}]").get("ip")
        for i, item in enumerate(ctx.seq(status.get("podIPs"), "status.podIPs"))
    ]
    if not raw_ips and status.get("podIP"):
        raw_ips = [status.get("podIP")]
    for i, raw in enumerate(raw_ips):
        try:
            ip = ip_address(ctx.string(raw, f"status.podIPs[{i}].ip"))
        except ValueError:
            ctx.fail(f"status.podIPs[{i}].ip", f"invalid IP address {raw!r}")
        if ip not in ips:
            ips.append(ip)
    node = spec.get("nodeName")
    # Set last: a label the pod's author wrote under this key is overwritten.
    labels[SERVICE_ACCOUNT_LABEL] = _service_account(ctx, spec)
    return Pod(
        owner=_controller(ctx, obj),
        policy_mode=_policy_mode(obj),
        quarantine=_quarantine(obj),
        namespace=namespace,
        name=name,
        uid=uid,
        labels=labels,
        ips=tuple(ips),
        node_name=str(node) if node else None,
        host_network=bool(spec.get("hostNetwork", False)),
        phase=str(status.get("phase") or "Pending"),
        ports=tuple(ports),
    )


def _service_account(ctx: _Ctx, spec: Mapping[str, Any]) -> str:
    """spec.serviceAccountName, else the deprecated spec.serviceAccount, else `default`: what
    the API server stores (its conversion and the ServiceAccount admission plugin)."""
    for field in ("serviceAccountName", "serviceAccount"):
        raw = spec.get(field)
        if raw is None or raw == "":
            continue
        name = ctx.string(raw, f"spec.{field}")
        if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
            ctx.fail(f"spec.{field}", f"invalid service account name {name!r}: "
                     "must be a lowercase DNS subdomain")
        return name
    return DEFAULT_SERVICE_ACCOUNT


def _policy_mode(obj: Mapping[str, Any]) -> str | None:
    """The audit/enforce annotation; a value that is neither enforces (fail closed)."""
    meta = obj.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
    if not isinstance(annotations, Mapping) or POLICY_MODE_ANNOTATION not in annotations:
        return None
    value = annotations[POLICY_MODE_ANNOTATION]
    return value if value in POLICY_MODES else "enforce"


def _quarantine(obj: Mapping[str, Any]) -> str | None:
    """The quarantine annotation's reason ("" is a quarantine without one); None: none."""
    meta = obj.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
    if not isinstance(annotations, Mapping) or QUARANTINE_ANNOTATION not in annotations:
        return None
    return str(annotations[QUARANTINE_ANNOTATION] or "")


def _controller(ctx: _Ctx, obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """The owner reference marked controller, as (kind, name); None when there is none."""
    meta = ctx.mapping(obj.get("metadata"), "metadata")
    refs = ctx.seq(meta.get("ownerReferences"), "metadata.ownerReferences")
    for i, raw in enumerate(refs):
        ref = ctx.mapping(raw, f"metadata.ownerReferences[{i}]")
        if ref.get("controller") and ref.get("kind") and ref.get("name"):
            kind = ctx.string(ref["kind"], f"metadata.ownerReferences[{i}].kind")
            return kind, ctx.string(ref["name"], f"metadata.ownerReferences[{i}].name")
    return None


# --- NetworkPolicy ----------------------------------------------------------------------


def _cidr(ctx: _Ctx, raw: Any, field: str) -> IPNetwork:
    text = ctx.string(raw, field) if raw is not None else ctx.fail(field, "required value")
    try:
        # strict=False: legacy CIDRs with host bits set are masked, as Go's ParseCIDRSloppy.
        return ip_network(text, strict=False)
    except ValueError:
        ctx.fail(field, f"invalid CIDR {text!r}")


def _ip_block(ctx: _Ctx, raw: Any, field: str) -> IPBlock:
    block = ctx.mapping(raw, field)
    cidr = _cidr(ctx, block.get("cidr"), f"{field}.cidr")
    excepts = []
    for i, item in enumerate(ctx.seq(block.get("except"), f"{field}.except")):
        where = f"{field}.except[{i}]"
        ex = _cidr(ctx, item, where)
        if (
            ex.version != cidr.version
            or not ex.subnet_of(cidr)  # type: ignore[arg-type]
            or ex.prefixlen <= cidr.prefixlen
        ):
            ctx.fail(where, f"{ex} must be a strict subset of cidr {cidr}")
        excepts.append(ex)
    return IPBlock(cidr=cidr, except_=tuple(excepts))


def _peer(ctx: _Ctx, raw: Any, field: str) -> PolicyPeer:
    peer = ctx.mapping(raw, field)
    has_pod = peer.get("podSelector") is not None
    has_ns = peer.get("namespaceSelector") is not None
    has_block = peer.get("ipBlock") is not None
    if not (has_pod or has_ns or has_block):
        ctx.fail(field, "must specify a peer: podSelector, namespaceSelector or ipBlock")
    if has_block and (has_pod or has_ns):
        ctx.fail(f"{field}.ipBlock", "may not specify both ipBlock and another peer")
    if has_block:
        return PolicyPeer(ip_block=_ip_block(ctx, peer["ipBlock"], f"{field}.ipBlock"))
    return PolicyPeer(
        pod_selector=_selector(ctx, peer["podSelector"], f"{field}.podSelector")
        if has_pod
        else None,
        namespace_selector=_selector(ctx, peer["namespaceSelector"], f"{field}.namespaceSelector")
        if has_ns
        else None,
    )


def _policy_port(ctx: _Ctx, raw: Any, field: str) -> PolicyPort:
    item = ctx.mapping(raw, field)
    protocol = _protocol(ctx, item.get("protocol"), f"{field}.protocol")
    raw_port = item.get("port")
    port: int | str | None
    if raw_port is None:
        port = None
    elif isinstance(raw_port, str):
        if raw_port.isdigit():
            # An intstr string is a port name, and names need a letter: the API server
            # rejects "80" in quotes.
            ctx.fail(f"{field}.port", f"{raw_port!r} is a string: write the port as a number")
        port = _port_name(ctx, raw_port, f"{field}.port")
    else:
        port = _port_number(ctx, raw_port, f"{field}.port")
    end_port = item.get("endPort")
    if end_port is not None:
        end_port = _port_number(ctx, end_port, f"{field}.endPort")
        if port is None:
            ctx.fail(f"{field}.endPort", "may not be specified when `port` is not specified")
        if isinstance(port, str):
            ctx.fail(f"{field}.endPort", "may not be specified when `port` is non-numeric")
        if end_port < port:
            ctx.fail(f"{field}.endPort", f"must be greater than or equal to `port` ({port})")
    return PolicyPort(protocol=protocol, port=port, end_port=end_port)


def _rules(ctx: _Ctx, raw: Any, field: str, peers_key: str) -> tuple[PolicyRule, ...]:
    rules = []
    for i, item in enumerate(ctx.seq(raw, field)):
        where = f"{field}[{i}]"
        rule = ctx.mapping(item, where)
        raw_peers = ctx.seq(rule.get(peers_key), f"{where}.{peers_key}")
        raw_ports = ctx.seq(rule.get("ports"), f"{where}.ports")
        peers = tuple(_peer(ctx, p, f"{where}.{peers_key}[{j}]") for j, p in enumerate(raw_peers))
        ports = tuple(_policy_port(ctx, p, f"{where}.ports[{j}]") for j, p in enumerate(raw_ports))
        # Empty and missing are the same in v1: all peers / all ports.
        rules.append(PolicyRule(peers=peers or None, ports=ports or None))
    return tuple(rules)


def _accepted_policy(ctx: _Ctx, obj: Mapping[str, Any], group: str) -> NetworkPolicy:
    """Another group's NetworkPolicy with the v1 schema, named NAME.GROUP in the model."""
    policy = _parse_policy(ctx, obj)
    name = accepted_name(policy.name, group)
    if len(name) > 253:
        ctx.fail("metadata.name", f"read as NetworkPolicy {name!r}: longer than 253 characters")
    return replace(policy, name=name)


def _parse_policy(ctx: _Ctx, obj: Mapping[str, Any]) -> NetworkPolicy:
    name, namespace, uid, _ = _metadata(ctx, obj, namespaced=True)
    ctx.namespace, ctx.name = namespace, name
    spec = ctx.mapping(obj.get("spec"), "spec")
    pod_selector = _selector(ctx, spec.get("podSelector"), "spec.podSelector")
    ingress = _rules(ctx, spec.get("ingress"), "spec.ingress", "from")
    egress = _rules(ctx, spec.get("egress"), "spec.egress", "to")
    types = []
    for i, t in enumerate(ctx.seq(spec.get("policyTypes"), "spec.policyTypes")):
        if t not in (INGRESS, EGRESS):
            ctx.fail(f"spec.policyTypes[{i}]", f"unsupported value {t!r}: use Ingress or Egress")
        if t in types:
            ctx.fail(f"spec.policyTypes[{i}]", f"duplicate value {t!r}")
        types.append(t)
    return NetworkPolicy(
        namespace=namespace,
        name=name,
        uid=uid,
        pod_selector=pod_selector,
        policy_types=frozenset(types),  # empty: defaulted by NetworkPolicy.__post_init__
        ingress=ingress,
        egress=egress,
        egress_field_present="egress" in spec,
    )
