"""kube-proxy in nftables mode (`--proxy-mode nftables`, GA since Kubernetes 1.31), emulated
inside each lab node namespace.

The ruleset has the shape of pkg/proxy/nftables/proxier.go, so the enforcer meets the packets
it meets on such a node. One table per family, `ip kube-proxy` and `ip6 kube-proxy`:

- base chains `nat-prerouting` and `nat-output` (hook priority dstnat) jump to `services`,
  which looks up `daddr . l4proto . dport` in the verdict map `service-ips` (ClusterIPs to
  `service-<hash>-ns/svc/proto/port`, external and load-balancer IPs to `external-...`) and,
  for any local destination address (`fib daddr type local`, kube-proxy's default
  --nodeport-addresses), `l4proto . dport` in `service-nodeports`;
- a service chain picks its endpoint with `numgen random mod N vmap { 0 : goto endpoint-...,
  ... }`; an endpoint chain marks a backend reaching itself for masquerade (hairpin) and
  DNATs to `backend:targetPort`;
- `external-...` marks for masquerade and goes to the service chain (externalTrafficPolicy
  Cluster), or with Local short-circuits pod and node traffic to the service chain and sends
  the rest to `local-...` (local endpoints only);
- traffic to a ClusterIP from outside the pod CIDR is marked for masquerade (kube-proxy's
  local-traffic detector by cluster CIDR), and `nat-postrouting` (priority srcnat) jumps to
  `masquerading`: marked packets are masqueraded `fully-random`, the mark cleared;
- the filter chains (priority dstnat - 10, and dstnat + 10 after output's DNAT): Services
  without endpoints are rejected (`no-endpoint-services`, `no-endpoint-nodeports`; dropped
  for Local with no local endpoint), ports a ClusterIP does not serve are rejected
  (`cluster-ips`), and `firewall-ips` (loadBalancerSourceRanges) stays empty, as the model
  has no source ranges.

Each sync replaces the table whole in one `nft -f` transaction (add, delete, add: atomic,
as kube-proxy's own transaction is; kube-proxy instead flushes and refills what exists and
deletes stale chains a second later, which a table replaced whole has no need of). Session
affinity is not emulated (the model has none), nor is `masqueradeAll`.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
from collections.abc import Mapping
from ipaddress import IPv4Network, IPv6Network

from enforcer.model.cluster import ClusterState
from enforcer.model.objects import IPAddress
from enforcer.model.services import Backend, Service, ServicePort

TABLE = "kube-proxy"
MASQ_MARK = "0x004000"  # fmt.Sprintf("%#08x", 1<<14): kube-proxy's default --masquerade-bit
NAME_MAX = 256 - 16  # knftables.NameLengthMax less the longest chain prefix

# nft priority names; the nft of Debian 12 takes "dstnat" in prerouting only.
DSTNAT, SRCNAT = -100, 100
# (name, type, hook, priority), as nftablesBaseChains.
BASE_CHAINS = (
    ("filter-prerouting", "filter", "prerouting", DSTNAT - 10),
    ("filter-input", "filter", "input", DSTNAT - 10),
    ("filter-forward", "filter", "forward", DSTNAT - 10),
    ("filter-output", "filter", "output", DSTNAT - 10),
    ("filter-output-post-dnat", "filter", "output", DSTNAT + 10),
    ("nat-prerouting", "nat", "prerouting", DSTNAT),
    ("nat-output", "nat", "output", DSTNAT),
    ("nat-postrouting", "nat", "postrouting", SRCNAT),
)
# (chain, from base chain, match), as nftablesJumpChains.
JUMP_CHAINS = (
    ("nodeport-endpoints-check", "filter-input", "ct state new"),
    ("service-endpoints-check", "filter-input", "ct state new"),
    ("service-endpoints-check", "filter-forward", "ct state new"),
    ("service-endpoints-check", "filter-output", "ct state new"),
    ("firewall-check", "filter-prerouting", "ct state new"),
    ("firewall-check", "filter-output", "ct state new"),
    ("services", "nat-output", ""),
    ("services", "nat-prerouting", ""),
    ("masquerading", "nat-postrouting", ""),
    ("cluster-ips-check", "filter-forward", "ct state new"),
    ("cluster-ips-check", "filter-output-post-dnat", "ct state new"),
)

PORT_KEY = "inet_proto . inet_service"
# Verdict maps: (name, keyed by address too, comment).
MAPS = (
    ("no-endpoint-services", True,
     "vmap to drop or reject packets to services with no endpoints"),
    ("no-endpoint-nodeports", False,
     "vmap to drop or reject packets to service nodeports with no endpoints"),
    ("firewall-ips", True, "destinations that are subject to LoadBalancerSourceRanges"),
    ("service-ips", True, "ClusterIP, ExternalIP and LoadBalancer IP traffic"),
    ("service-nodeports", False, "NodePort traffic"),
)  # fmt: skip


def _hash_and_truncate(name: str) -> str:
    digest = base64.b32encode(hashlib.sha256(name.encode()).digest()).decode()
    name = f"{digest[:8]}-{name}"
    return name if len(name) <= NAME_MAX else name[: NAME_MAX - 3] + "..."


def service_chain_base(svc: Service, sp: ServicePort) -> str:
    """servicePortChainNameBase: HASH-namespace/name/protocol/portname."""
    return _hash_and_truncate(f"{svc.namespace}/{svc.name}/{sp.protocol.lower()}/{sp.name}")


def endpoint_chain(svc: Service, sp: ServicePort, backend: Backend) -> str:
    """endpoint-HASH-namespace/name/protocol/portname__ip/port (an IPv6 address's colons
    become dots: nft names allow neither)."""
    ip = str(backend.ip).replace(":", ".")
    base = f"{svc.namespace}/{svc.name}/{sp.protocol.lower()}/{sp.name}__{ip}/{backend.port}"
    return "endpoint-" + _hash_and_truncate(base)


def _dest(backend: Backend) -> str:
    ip = backend.ip
    host = str(ip) if ip is not None and ip.version == 4 else f"[{ip}]"
    return f"{host}:{backend.port}"


class _Tx:
    """An nft transaction for one table, written as `nft -f` input."""

    def __init__(self, family: int) -> None:
        self.ip = "ip" if family == 4 else "ip6"
        self.table = f"{self.ip} {TABLE}"
        self.lines: list[str] = []
        self.chains: set[str] = set()

    def add(self, what: str) -> None:
        self.lines.append(f"add {what}")

    def chain(self, name: str) -> None:
        if name not in self.chains:
            self.chains.add(name)
            self.add(f"chain {self.table} {name}")

    def rule(self, chain: str, rule: str, comment: str | None = None) -> None:
        tail = f' comment "{comment}"' if comment else ""
        self.add(f"rule {self.table} {chain} {rule}{tail}")

    def element(
        self, container: str, key: str, value: str | None = None, comment: str | None = None
    ) -> None:
        noted = f' comment "{comment}"' if comment else ""
        mapped = f" : {value}" if value else ""
        self.add(f"element {self.table} {container} {{ {key}{noted}{mapped} }}")


def ruleset(
    cluster: ClusterState,
    family: int,
    cluster_cidr: IPv4Network | IPv6Network,
    node: str,
    node_of_pod: Mapping[str, str],
) -> str:
    """The whole `kube-proxy` table of one family for one node, as `nft -f` input."""
    tx = _Tx(family)
    _setup(tx, family)
    for _key, svc in sorted(cluster.services.services.items()):
        if not svc.proxied:
            continue
        cluster_ip = next((ip for ip in svc.cluster_ips if ip.version == family), None)
        if cluster_ip is None:
            continue  # this family's proxier does not know the Service
        for sp in svc.ports:
            backends = [
                b
                for b in cluster.services.backends(cluster, svc.key, sp)
                if b.ip is not None and b.ip.version == family
            ]
            _service_port(tx, svc, sp, cluster_ip, backends, cluster_cidr, node, node_of_pod)
    return "\n".join(tx.lines) + "\n"


def _setup(tx: _Tx, family: int) -> None:
    """setupNFTables: the table, its base and top-level chains, sets and maps."""
    addr = "ipv4_addr" if family == 4 else "ipv6_addr"
    no_localhost = "ip daddr != 127.0.0.0/8" if family == 4 else "ip6 daddr != ::1"
    # The table replaced whole in this one transaction: add (so that delete cannot fail).
    tx.add(f"table {tx.table}")
    tx.lines.append(f"delete table {tx.table}")
    tx.add(f'table {tx.table} {{ comment "rules for kube-proxy" ; }}')
    for name, kind, hook, priority in BASE_CHAINS:
        tx.chains.add(name)
        tx.add(f"chain {tx.table} {name} {{ type {kind} hook {hook} priority {priority} ; }}")
    for chain, base, match in JUMP_CHAINS:
        tx.chain(chain)
        tx.rule(base, f"{match} jump {chain}".strip())
    for chain in ("services", "cluster-ips-check", "masquerading", "mark-for-masquerade"):
        tx.chain(chain)
    tx.rule("mark-for-masquerade", f"mark set mark or {MASQ_MARK}")
    tx.rule("masquerading", f"mark and {MASQ_MARK} == 0 return")
    tx.rule("masquerading", f"mark set mark xor {MASQ_MARK}")
    tx.rule("masquerading", "masquerade fully-random")
    tx.add(f'set {tx.table} cluster-ips {{ type {addr} ; comment "Active ClusterIPs" ; }}')
    tx.rule(
        "cluster-ips-check",
        f"{tx.ip} daddr @cluster-ips reject",
        "Reject traffic to invalid ports of ClusterIPs",
    )
    for name, keyed_by_address, comment in MAPS:
        kind = f"{addr} . {PORT_KEY} : verdict" if keyed_by_address else f"{PORT_KEY} : verdict"
        tx.add(f'map {tx.table} {name} {{ type {kind} ; comment "{comment}" ; }}')
    tx.add(
        f"chain {tx.table} reject-chain "
        '{ comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ; }'
    )
    tx.chains.add("reject-chain")
    tx.rule("reject-chain", "reject")
    tx.rule(
        "service-endpoints-check",
        f"{tx.ip} daddr . meta l4proto . th dport vmap @no-endpoint-services",
    )
    tx.rule(
        "nodeport-endpoints-check",
        f"{no_localhost} meta l4proto . th dport vmap @no-endpoint-nodeports",
    )
    tx.rule("firewall-check", f"{tx.ip} daddr . meta l4proto . th dport vmap @firewall-ips")
    tx.rule("services", f"{tx.ip} daddr . meta l4proto . th dport vmap @service-ips")
    tx.rule(
        "services",
        f"fib daddr type local {no_localhost} meta l4proto . th dport vmap @service-nodeports",
    )


def _service_port(
    tx: _Tx,
    svc: Service,
    sp: ServicePort,
    cluster_ip: IPAddress,
    backends: list[Backend],
    cluster_cidr: IPv4Network | IPv6Network,
    node: str,
    node_of_pod: Mapping[str, str],
) -> None:
    """One service port, as syncProxyRules writes it (internal traffic policy Cluster)."""
    proto = sp.protocol.lower()
    base = service_chain_base(svc, sp)
    cluster_chain, local_chain, ext_chain = (
        f"{prefix}-{base}" for prefix in ("service", "local", "external")
    )
    local = [b for b in backends if b.pod is not None and node_of_pod.get(b.pod) == node]
    ext_local = svc.external_traffic_policy == "Local"
    has_endpoints = bool(backends)
    has_external = bool(local) if ext_local else has_endpoints
    external_ips = [
        ip for ip in svc.external_ips + svc.load_balancer_ips if ip.version == cluster_ip.version
    ]
    uses_external = has_endpoints and (sp.node_port is not None or bool(external_ips))
    reject = "goto reject-chain"
    ext_verdict = reject if not has_endpoints else "drop"
    name = svc.key + (f":{sp.name}" if sp.name else "")  # ServicePortName, for comments

    # Chains first (ensureChain), so that the elements and rules below can go to them.
    if has_endpoints:
        for b in backends:
            tx.chain(endpoint_chain(svc, sp, b))
        tx.chain(cluster_chain)
        if ext_local and local:
            tx.chain(local_chain)
        if uses_external:
            tx.chain(ext_chain)

    tx.element("cluster-ips", str(cluster_ip))
    if has_endpoints:
        tx.element("service-ips", f"{cluster_ip} . {proto} . {sp.port}", f"goto {cluster_chain}")
    else:
        tx.element("no-endpoint-services", f"{cluster_ip} . {proto} . {sp.port}", reject, name)
    for ip in external_ips:
        if has_endpoints:
            tx.element("service-ips", f"{ip} . {proto} . {sp.port}", f"goto {ext_chain}")
        if not has_external:
            tx.element("no-endpoint-services", f"{ip} . {proto} . {sp.port}", ext_verdict, name)
    if sp.node_port is not None:
        if has_endpoints:
            tx.element("service-nodeports", f"{proto} . {sp.node_port}", f"goto {ext_chain}")
        if not has_external:
            tx.element("no-endpoint-nodeports", f"{proto} . {sp.node_port}", ext_verdict, name)
    if not has_endpoints:
        return

    # Internal traffic: from outside the pod CIDR to the ClusterIP, masqueraded.
    tx.rule(
        cluster_chain,
        f"{tx.ip} daddr {cluster_ip} {proto} dport {sp.port} "
        f"{tx.ip} saddr != {cluster_cidr} jump mark-for-masquerade",
    )
    if uses_external:
        if not ext_local:
            tx.rule(ext_chain, "jump mark-for-masquerade")
        else:
            tx.rule(
                ext_chain, f"{tx.ip} saddr {cluster_cidr} goto {cluster_chain}",
                "short-circuit pod traffic",
            )  # fmt: skip
            tx.rule(
                ext_chain, "fib saddr type local jump mark-for-masquerade",
                "masquerade local traffic",
            )  # fmt: skip
            tx.rule(
                ext_chain, f"fib saddr type local goto {cluster_chain}",
                "short-circuit local traffic",
            )  # fmt: skip
        if has_external:
            tx.rule(ext_chain, f"goto {local_chain if ext_local else cluster_chain}")
    _balance(tx, cluster_chain, svc, sp, backends)
    if ext_local and local:
        _balance(tx, local_chain, svc, sp, local)
    written: set[str] = set()
    for b in backends:  # the endpoint chains, each once (both policy chains may use it)
        ep = endpoint_chain(svc, sp, b)
        if ep not in written:
            written.add(ep)
            tx.rule(ep, f"{tx.ip} saddr {b.ip} jump mark-for-masquerade")  # hairpin
            tx.rule(ep, f"meta l4proto {proto} dnat to {_dest(b)}")


def _balance(tx: _Tx, chain: str, svc: Service, sp: ServicePort, backends: list[Backend]) -> None:
    """writeServiceToEndpointRules: one endpoint at random."""
    targets = " , ".join(f"{i} : goto {endpoint_chain(svc, sp, b)}" for i, b in enumerate(backends))
    tx.rule(chain, f"numgen random mod {len(backends)} vmap {{ {targets} }}")


def cni_masquerade(family: int, cluster_cidr: IPv4Network | IPv6Network) -> str:
    """Not kube-proxy's: the CNI's masquerade of pod traffic leaving the pod network (flannel's
    ip-masq), in a table of its own, as a CNI in nftables mode keeps it."""
    ip = "ip" if family == 4 else "ip6"
    table = f"{ip} lab-cni"
    return "\n".join(
        [
            f"add table {table}",
            f"delete table {table}",
            f"add table {table}",
            f"add chain {table} postrouting {{ type nat hook postrouting priority {SRCNAT} ; }}",
            f"add rule {table} postrouting {ip} saddr {cluster_cidr} {ip} daddr != {cluster_cidr}"
            " masquerade",
            "",
        ]
    )


def load(netns: str, text: str) -> None:
    """One `nft -f` transaction in the node namespace: all of it applies, or none."""
    proc = subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", "nft", "-f", "-"],
        input=text,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"nft -f in {netns}: {proc.stderr.strip()}")
