"""The lab's kube-proxy in the mode chosen at `enforcer lab up --proxy-mode` (kube-proxy's own
--proxy-mode): iptables (kubeproxy.py, the default) or nftables (kubeproxy_nft.py). IPVS is not
emulated (nor supported by the enforcer: its ClusterIPs are local addresses of the node).
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Network, IPv6Network

from enforcer.lab import kubeproxy, kubeproxy_nft
from enforcer.model.cluster import ClusterState

MODES = ("iptables", "nftables")
DEFAULT = "iptables"


def sync(
    mode: str,
    netns: str,
    cluster: ClusterState,
    family: int,
    cluster_cidr: IPv4Network | IPv6Network,
    node: str,
    node_of_pod: Mapping[str, str],
    cni_masquerade: bool = False,
) -> None:
    """Replace one family's Service rules in a node namespace, atomically. `cni_masquerade`
    adds flannel's ip-masq (pod traffic leaving the pod network takes the node's address),
    in the same tool and transaction."""
    if mode == "iptables":
        table = kubeproxy.nat_table(
            cluster, family, cluster_cidr, node, node_of_pod, cni_masquerade
        )
        kubeproxy.restore(netns, family, table)
    elif mode == "nftables":
        text = kubeproxy_nft.ruleset(cluster, family, cluster_cidr, node, node_of_pod)
        if cni_masquerade:
            text += kubeproxy_nft.cni_masquerade(family, cluster_cidr)
        kubeproxy_nft.load(netns, text)
    else:
        raise ValueError(f"proxy mode {mode!r}: use one of {', '.join(MODES)}")
