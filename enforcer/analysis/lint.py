"""Lint checks: the NetworkPolicy mistakes people actually make.

Checks that need pods (a policy selecting nothing, undeclared named ports, broad selectors,
DNS per pod) use the pods in the input; with policies alone, DNS is checked on a
representative pod built from each policy's selector.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from enforcer.analysis.inputs import planned_state
from enforcer.model.cluster import ClusterState
from enforcer.model.loader import LoadResult, ValidationError
from enforcer.model.objects import (
    EGRESS,
    INGRESS,
    IPNetwork,
    LabelSelector,
    NetworkPolicy,
    Pod,
    PolicyPort,
    PolicyRule,
    kind_of,
)

ERROR = "error"
WARNING = "warning"
DNS_PORT = 53


@dataclass(frozen=True)
class Finding:
    level: str  # error | warning
    check: str  # a stable id, e.g. dns-not-allowed
    object: str  # "NetworkPolicy ns/name", "Pod ns/name", ...
    message: str
    field: str = ""
    origin: str = ""

    @classmethod
    def from_error(cls, error: ValidationError) -> Finding:
        return cls(ERROR, "invalid", error.object_ref, error.message, error.field, error.origin)

    def render(self) -> str:
        where = f"{self.origin}: " if self.origin else ""
        field = f" {self.field}" if self.field else ""
        return f"{where}{self.level}[{self.check}] {self.object}{field}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Linter:
    def __init__(self, result: LoadResult, pod_cidrs: Sequence[IPNetwork]) -> None:
        self.result = result
        self.state: ClusterState = planned_state(result)
        self.pod_cidrs = pod_cidrs
        self.origins = {
            (kind_of(o), _key(o)): origin
            for o, origin in zip(result.objects, result.origins, strict=True)
        }
        self.has_pods = any(self.state.is_endpoint(p) for p in self.state.pods.values())
        self.findings: list[Finding] = []

    def add(
        self, level: str, check: str, policy: NetworkPolicy, message: str, field: str = ""
    ) -> None:
        origin = self.origins.get(("NetworkPolicy", policy.key), "")
        obj = f"NetworkPolicy {policy.key}"
        self.findings.append(Finding(level, check, obj, message, field, origin))

    def run(self) -> list[Finding]:
        self.duplicates()
        for policy in sorted(self.state.policies.values(), key=lambda p: p.key):
            self.policy_types(policy)
            self.dns_tcp_only(policy)
            self.or_instead_of_and(policy)
            self.ip_blocks(policy)
            self.named_ports(policy)
            if self.has_pods:
                self.selects_no_pod(policy)
                self.broad_selectors(policy)
        self.dns_per_pod()
        self.dns_without_pods()
        return sorted(self.findings, key=lambda f: (f.origin, f.object, f.field, f.check))

    # --- checks -------------------------------------------------------------------------------

    def duplicates(self) -> None:
        counts = Counter((kind_of(o), _key(o)) for o in self.result.objects)
        for (kind, key), n in sorted(counts.items()):
            if n > 1:
                origin = self.origins.get((kind, key), "")
                msg = f"defined {n} times in the input: only the last definition applies"
                self.findings.append(
                    Finding(WARNING, "duplicate", f"{kind} {key}", msg, "", origin)
                )

    def policy_types(self, policy: NetworkPolicy) -> None:
        if policy.policy_types_defaulted and policy.egress and not policy.ingress:
            self.add(
                WARNING,
                "egress-only-isolates-ingress",
                policy,
                "policyTypes is missing, so it defaults to [Ingress, Egress]: this egress "
                "policy also denies all ingress to the pods it selects; add "
                "`policyTypes: [Egress]` if only egress is meant",
                "spec.policyTypes",
            )
        if policy.policy_types_defaulted and policy.egress_field_present and not policy.egress:
            also = " and it denies all ingress" if not policy.ingress else ""
            self.add(
                WARNING,
                "empty-egress-without-policytypes",
                policy,
                "`egress: []` without policyTypes does not deny egress (policyTypes defaults to "
                f"[Ingress]){also}; add `policyTypes: [Egress]` to deny all egress",
                "spec.egress",
            )
        for direction, field in ((EGRESS, "spec.egress"), (INGRESS, "spec.ingress")):
            rules = policy.rules(direction)
            if rules and direction not in policy.policy_types:
                self.add(
                    ERROR,
                    "rules-ignored",
                    policy,
                    f"{len(rules)} {direction.lower()} rule(s) are ignored because policyTypes "
                    f"does not include {direction}",
                    field,
                )

    def dns_tcp_only(self, policy: NetworkPolicy) -> None:
        for i, rule in enumerate(policy.egress):
            if not rule.ports:
                continue
            tcp = any(p.matches_number("TCP", DNS_PORT) and p.port for p in rule.ports)
            udp = any(p.matches_number("UDP", DNS_PORT) for p in rule.ports)
            if tcp and not udp:
                self.add(
                    WARNING,
                    "dns-tcp-only",
                    policy,
                    "allows port 53 over TCP only (a port without `protocol` means TCP): DNS "
                    "queries use UDP; add `{protocol: UDP, port: 53}`",
                    f"spec.egress[{i}].ports",
                )

    def or_instead_of_and(self, policy: NetworkPolicy) -> None:
        for direction, key in ((INGRESS, "from"), (EGRESS, "to")):
            for i, rule in enumerate(policy.rules(direction)):
                peers = rule.peers or ()
                ns_only = [
                    j for j, p in enumerate(peers) if p.namespace_selector and not p.pod_selector
                ]
                pod_only = [
                    j for j, p in enumerate(peers) if p.pod_selector and not p.namespace_selector
                ]
                if ns_only and pod_only:
                    self.add(
                        WARNING,
                        "or-instead-of-and",
                        policy,
                        f"items {ns_only[0]} (namespaceSelector) and {pod_only[0]} (podSelector) "
                        "are separate peers, so they are ORed: every pod of the selected "
                        "namespaces OR the selected pods of this namespace; to mean pods "
                        "matching both, put both selectors in one item",
                        f"spec.{direction.lower()}[{i}].{key}",
                    )

    def ip_blocks(self, policy: NetworkPolicy) -> None:
        for direction, key in ((INGRESS, "from"), (EGRESS, "to")):
            for i, rule in enumerate(policy.rules(direction)):
                for j, peer in enumerate(rule.peers or ()):
                    block = peer.ip_block
                    if block is None:
                        continue
                    field = f"spec.{direction.lower()}[{i}].{key}[{j}].ipBlock"
                    pods = sorted(self.state.ip_block_pods(block))
                    nets = [
                        str(c)
                        for c in self.pod_cidrs
                        if c.version == block.cidr.version
                        and c.overlaps(block.cidr)
                        and not any(c.subnet_of(ex) for ex in block.except_)  # type: ignore[arg-type]
                    ]
                    if pods or nets:
                        what = []
                        if nets:
                            what.append(f"the pod network {', '.join(nets)}")
                        if pods:
                            shown = ", ".join(pods[:5]) + (" ..." if len(pods) > 5 else "")
                            what.append(f"{len(pods)} pod(s): {shown}")
                        self.add(
                            WARNING,
                            "ipblock-overlaps-pods",
                            policy,
                            f"ipBlock {block.cidr} overlaps {' and '.join(what)}; pod IPs "
                            "change, select pods with pod/namespace selectors instead",
                            field,
                        )

    def named_ports(self, policy: NetworkPolicy) -> None:
        for direction, _peers_key in ((INGRESS, "from"), (EGRESS, "to")):
            for i, rule in enumerate(policy.rules(direction)):
                named = [(j, p) for j, p in enumerate(rule.ports or ()) if isinstance(p.port, str)]
                if not named:
                    continue
                base = f"spec.{direction.lower()}[{i}]"
                if direction == EGRESS and rule.peers and all(p.ip_block for p in rule.peers):
                    self.add(
                        ERROR,
                        "named-port-ipblock",
                        policy,
                        "a named port resolves on the destination pod, and ipBlock destinations "
                        "have none: this rule never matches; use a port number",
                        f"{base}.ports[{named[0][0]}]",
                    )
                    continue
                if not self.has_pods:
                    continue
                pods = self._destinations(policy, direction, rule)
                if not pods:
                    continue
                for j, port in named:
                    self._named_port(policy, port, pods, f"{base}.ports[{j}]")

    def _destinations(self, policy: NetworkPolicy, direction: str, rule: PolicyRule) -> list[Pod]:
        if direction == INGRESS:
            keys = self.state.pods_selected_by(policy)
        elif not rule.peers:
            keys = set(self.state.endpoint_keys())
        else:
            keys = set().union(*(self.state.peer_pods(policy, p) for p in rule.peers))
        return [self.state.pods[k] for k in sorted(keys)]

    def _named_port(
        self, policy: NetworkPolicy, port: PolicyPort, pods: list[Pod], field: str
    ) -> None:
        name = str(port.port)
        if any(pod.resolve_named_port(name, port.protocol) for pod in pods):
            return
        other = sorted({cp.protocol for pod in pods for cp in pod.ports if cp.name == name})
        if other:
            self.add(
                ERROR,
                "named-port-protocol",
                policy,
                f"port {name!r} is declared with protocol {'/'.join(other)}, but the rule says "
                f"{port.protocol}: named ports match by name AND protocol, so this matches nothing",
                field,
            )
        else:
            self.add(
                WARNING,
                "named-port-undeclared",
                policy,
                f"no destination pod declares a port named {name!r} ({port.protocol}), so this "
                "port matches nothing today",
                field,
            )

    def selects_no_pod(self, policy: NetworkPolicy) -> None:
        if not self.state.pods_selected_by(policy):
            self.add(
                WARNING,
                "selects-no-pod",
                policy,
                f"selects no pod of the input in namespace {policy.namespace}: check the labels "
                "and the namespace",
                "spec.podSelector",
            )

    def broad_selectors(self, policy: NetworkPolicy) -> None:
        pods_in_ns = {
            k
            for k in self.state.endpoint_keys()
            if self.state.pods[k].namespace == policy.namespace
        }
        if len(pods_in_ns) < 2:
            return
        selectors: list[tuple[LabelSelector, str, set[str]]] = [
            (policy.pod_selector, "spec.podSelector", self.state.pods_selected_by(policy))
        ]
        for direction, key in ((INGRESS, "from"), (EGRESS, "to")):
            for i, rule in enumerate(policy.rules(direction)):
                for j, peer in enumerate(rule.peers or ()):
                    if peer.pod_selector is not None and peer.namespace_selector is None:
                        field = f"spec.{direction.lower()}[{i}].{key}[{j}].podSelector"
                        selected = self.state.peer_pods(policy, peer)
                        selectors.append((peer.pod_selector, field, selected))
        for selector, field, selected in selectors:
            if not selector.is_empty() and selected == pods_in_ns:
                self.add(
                    WARNING,
                    "broad-selector",
                    policy,
                    f"this selector matches every pod of namespace {policy.namespace} "
                    f"({len(pods_in_ns)} pods); if that is meant, write `{{}}`, otherwise "
                    "use a more specific label",
                    field,
                )

    def dns_per_pod(self) -> None:
        # Group pods with the same isolating policies and the same gap into one finding.
        groups: dict[tuple[tuple[str, ...], tuple[str, ...]], list[str]] = defaultdict(list)
        for key in self.state.endpoint_keys():
            policies = [p for p in self.state.policies_selecting(key) if EGRESS in p.policy_types]
            missing = self._dns_missing(policies)
            if missing:
                groups[(tuple(sorted(p.key for p in policies)), missing)].append(key)
        for (policy_keys, missing), pods in sorted(groups.items()):
            policy = self.state.policies[policy_keys[0]]
            shown = ", ".join(pods[:5]) + (" ..." if len(pods) > 5 else "")
            self.add(
                WARNING,
                "dns-not-allowed",
                policy,
                f"egress of {shown} is restricted by {', '.join(policy_keys)} but DNS over "
                f"{' and '.join(missing)} is not allowed; add an egress rule to your DNS "
                "servers for UDP and TCP port 53",
                "spec.egress",
            )

    def dns_without_pods(self) -> None:
        seen: set[tuple[str, ...]] = set()
        for policy in sorted(self.state.policies.values(), key=lambda p: p.key):
            if EGRESS not in policy.policy_types or self.state.pods_selected_by(policy):
                continue
            if self.has_pods and any(
                self.state.pods[k].namespace == policy.namespace for k in self.state.endpoint_keys()
            ):
                continue  # real pods in this namespace: dns_per_pod judged them
            labels = _representative_labels(policy.pod_selector)
            if labels is None:
                continue
            policies = [
                p
                for p in self.state.policies_in(policy.namespace)
                if EGRESS in p.policy_types and p.pod_selector.matches(labels)
            ]
            keys = tuple(sorted(p.key for p in policies))
            missing = self._dns_missing(policies)
            if missing and keys not in seen:
                seen.add(keys)
                self.add(
                    WARNING,
                    "dns-not-allowed",
                    policy,
                    f"pods this policy selects have their egress restricted by {', '.join(keys)} "
                    f"but DNS over {' and '.join(missing)} is not allowed; add an egress rule "
                    "to your DNS servers for UDP and TCP port 53",
                    "spec.egress",
                )

    def _dns_missing(self, egress_policies: Iterable[NetworkPolicy]) -> tuple[str, ...]:
        """Protocols DNS lacks for a pod isolated by these policies; () when fine.

        A pod whose egress allows nothing at all is closed on purpose: not a DNS mistake."""
        rules = [(p, r) for p in egress_policies for r in p.egress]
        if not rules:
            return ()
        return tuple(
            proto
            for proto in ("UDP", "TCP")
            if not any(self._allows_dns(p, r, proto) for p, r in rules)
        )

    def _allows_dns(self, policy: NetworkPolicy, rule: PolicyRule, protocol: str) -> bool:
        """Could this rule carry DNS? Port 53 must pass, and a peer must plausibly be a DNS
        server: anything, a rule that names port 53, all addresses, or pods that serve 53."""
        ports = rule.ports or ()
        if ports and not any(self._port_allows_dns(p, protocol) for p in ports):
            return False
        names_53 = any(p.port is not None and self._port_allows_dns(p, protocol) for p in ports)
        if not rule.peers or names_53:
            return True
        for peer in rule.peers:
            if peer.ip_block is not None:
                if peer.ip_block.cidr.prefixlen == 0:
                    return True
                continue
            if (peer.pod_selector is None or peer.pod_selector.is_empty()) and (
                peer.namespace_selector is not None and peer.namespace_selector.is_empty()
            ):
                return True  # every pod of every namespace
            if peer.pod_selector is not None and peer.pod_selector.match_labels.get("k8s-app") in (
                "kube-dns",
                "coredns",
            ):
                return True
            for key in self.state.peer_pods(policy, peer):
                if any(
                    cp.port == DNS_PORT and cp.protocol == protocol
                    for cp in self.state.pods[key].ports
                ):
                    return True
        return False

    def _port_allows_dns(self, port: PolicyPort, protocol: str) -> bool:
        if port.protocol != protocol:
            return False
        if isinstance(port.port, str):
            return any(
                DNS_PORT in pod.resolve_named_port(port.port, protocol)
                for pod in self.state.pods.values()
            )
        return port.matches_number(protocol, DNS_PORT)


def _key(obj: Any) -> str:
    return str(getattr(obj, "key", None) or obj.name)


def _representative_labels(selector: LabelSelector) -> dict[str, str] | None:
    """Labels of a pod the selector matches, or None when we cannot build one."""
    labels = dict(selector.match_labels)
    for req in selector.match_expressions:
        if req.operator == "In" and req.key not in labels:
            labels[req.key] = req.values[0]
        elif req.operator == "Exists" and req.key not in labels:
            labels[req.key] = "x"
    return labels if selector.matches(labels) else None


def lint(result: LoadResult, pod_cidrs: Sequence[IPNetwork] = ()) -> list[Finding]:
    """All findings for a loaded input (invalid objects are reported by the caller), those on
    cluster-scoped policies included (enforcer.analysis.lint_cluster)."""
    from enforcer.analysis.lint_cluster import cluster_findings  # it uses Finding from here

    linter = _Linter(result, pod_cidrs)
    findings = linter.run() + cluster_findings(result, linter.state)
    return sorted(findings, key=lambda f: (f.origin, f.object, f.field, f.check))
