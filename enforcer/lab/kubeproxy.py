"""kube-proxy in iptables mode, emulated inside each lab node namespace.

The rules have kube-proxy's shape (pkg/proxy/iptables/proxier.go), so the enforcer meets the
packets it meets on a real node: nat PREROUTING/OUTPUT -> KUBE-SERVICES -> KUBE-SVC-<hash>
(backend chosen with `-m statistic --mode random`, probability 1/(n-i) for the i-th of n) ->
KUBE-SEP-<hash> (DNAT to backend:targetPort; a backend reaching itself is marked for
masquerade: hairpin), NodePorts through KUBE-NODEPORTS -> KUBE-EXT-<hash> (masqueraded for
externalTrafficPolicy Cluster; Local keeps the client address and uses local backends only),
and KUBE-POSTROUTING masquerading marked packets with --random-fully. Traffic to a ClusterIP
from outside the pod CIDR is masqueraded too (kube-proxy's --cluster-cidr rule).

The nat table of a node namespace belongs to the lab: each sync replaces it whole with one
iptables-restore (atomic, like kube-proxy's own restore).
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
from collections.abc import Mapping
from ipaddress import IPv4Network, IPv6Network

from enforcer.model.cluster import ClusterState
from enforcer.model.services import Backend, Service, ServicePort

MASQ_MARK = "0x4000"


def _chain(prefix: str, *parts: str) -> str:
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return prefix + base64.b32encode(digest).decode()[:16]


def _host(ip: object, family: int) -> str:
    return f"{ip}/{32 if family == 4 else 128}"


def _dest(backend: Backend, family: int) -> str:
    return f"{backend.ip}:{backend.port}" if family == 4 else f"[{backend.ip}]:{backend.port}"


def nat_table(
    cluster: ClusterState,
    family: int,
    cluster_cidr: IPv4Network | IPv6Network,
    node: str,
    node_of_pod: Mapping[str, str],
    cni_masquerade: bool = False,
) -> str:
    """The whole nat table for one node, as iptables-restore input. `cni_masquerade` adds
    flannel's ip-masq rule: pod traffic leaving the pod network takes the node's address."""
    chains = ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"]
    rules = [
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
        f"-A KUBE-MARK-MASQ -j MARK --or-mark {MASQ_MARK}",
        f"-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN",
        f"-A KUBE-POSTROUTING -j MARK --xor-mark {MASQ_MARK}",
        "-A KUBE-POSTROUTING -j MASQUERADE --random-fully",
    ]
    for key, svc in sorted(cluster.services.services.items()):
        if not svc.proxied:
            continue
        for sp in svc.ports:
            backends = [
                b
                for b in cluster.services.backends(cluster, key, sp)
                if b.ip is not None and b.ip.version == family
            ]
            _service_port(chains, rules, svc, sp, backends, family, cluster_cidr, node, node_of_pod)
    # NodePorts last, for any local destination address (kube-proxy's --nodeport-addresses default).
    rules.append("-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS")
    if cni_masquerade:
        rules.append(f"-A POSTROUTING -s {cluster_cidr} ! -d {cluster_cidr} -j MASQUERADE")
    lines = ["*nat", *(f":{c} - [0:0]" for c in chains), *rules, "COMMIT", ""]
    return "\n".join(lines)


def _service_port(
    chains: list[str],
    rules: list[str],
    svc: Service,
    sp: ServicePort,
    backends: list[Backend],
    family: int,
    cluster_cidr: IPv4Network | IPv6Network,
    node: str,
    node_of_pod: Mapping[str, str],
) -> None:
    if not backends:
        return  # kube-proxy REJECTs these in the filter table; unroutable here is as good
    proto = sp.protocol.lower()
    name = f"{svc.key}:{sp.name}"
    svc_chain = _chain("KUBE-SVC-", name, sp.protocol)
    chains.append(svc_chain)
    match = f"-p {proto} -m {proto} --dport {sp.port}"
    for ip in svc.frontend_ips():
        if ip.version != family:
            continue
        dst = _host(ip, family)
        rules.append(
            f'-A KUBE-SERVICES -d {dst} {match} -m comment --comment "{name}" -j {svc_chain}'
        )
        rules.append(f"-A {svc_chain} ! -s {cluster_cidr} -d {dst} {match} -j KUBE-MARK-MASQ")
    _balance(chains, rules, svc_chain, name, sp, backends, family)
    if sp.node_port is None:
        return
    ext_chain = _chain("KUBE-EXT-", name, sp.protocol)
    chains.append(ext_chain)
    rules.append(f"-A KUBE-NODEPORTS -p {proto} -m {proto} --dport {sp.node_port} -j {ext_chain}")
    if svc.external_traffic_policy == "Local":
        local = [b for b in backends if b.pod is not None and node_of_pod.get(b.pod) == node]
        if not local:
            # kube-proxy drops these in its filter table; untranslated, the node refuses them.
            return
        local_chain = _chain("KUBE-SVL-", name, sp.protocol)
        chains.append(local_chain)
        _balance(chains, rules, local_chain, name, sp, local, family, sep_prefix="L")
        rules.append(f"-A {ext_chain} -j {local_chain}")
    else:
        rules.append(f"-A {ext_chain} -j KUBE-MARK-MASQ")
        rules.append(f"-A {ext_chain} -j {svc_chain}")


def _balance(
    chains: list[str],
    rules: list[str],
    from_chain: str,
    name: str,
    sp: ServicePort,
    backends: list[Backend],
    family: int,
    sep_prefix: str = "",
) -> None:
    proto = sp.protocol.lower()
    n = len(backends)
    for i, b in enumerate(backends):
        sep = _chain("KUBE-SEP-", sep_prefix, name, sp.protocol, _dest(b, family))
        if sep not in chains:
            chains.append(sep)
            rules.append(f"-A {sep} -s {_host(b.ip, family)} -j KUBE-MARK-MASQ")  # hairpin
            rules.append(
                f"-A {sep} -p {proto} -m {proto} -j DNAT --to-destination {_dest(b, family)}"
            )
        if i < n - 1:
            rules.append(
                f"-A {from_chain} -m statistic --mode random --probability {1 / (n - i):.10f} "
                f"-j {sep}"
            )
        else:
            rules.append(f"-A {from_chain} -j {sep}")


def restore(netns: str, family: int, table: str) -> None:
    tool = "iptables-restore" if family == 4 else "ip6tables-restore"
    proc = subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", tool],
        input=table,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{tool} in {netns}: {proc.stderr.strip()}")
