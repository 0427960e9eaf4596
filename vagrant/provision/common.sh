#!/usr/bin/env bash
# Every node: IPv6 on the private network, kernel settings, containerd, kubeadm and kubelet.
# Arguments: NODE_IPV4 NODE_IPV6 K8S_MINOR (e.g. 1.31). Idempotent (vagrant provision again).
set -euo pipefail

node_ip="$1"
node_ip6="$2"
k8s_minor="$3"
export DEBIAN_FRONTEND=noninteractive

# The private network carries node and pod traffic; the NAT interface has the same address on
# every VM, so nothing may pick it. Give the private interface a static ULA for dual-stack.
iface="$(ip -o -4 addr show | awk -v ip="$node_ip" '$4 ~ "^" ip "/" {print $2; exit}')"
if [ -z "$iface" ]; then
  echo "provision: no interface carries $node_ip" >&2
  exit 1
fi
cat >/etc/systemd/system/enforcer-lab-ipv6.service <<UNIT
[Unit]
Description=Static IPv6 address on the lab's private network
After=network-online.target
Wants=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/sysctl -w net.ipv6.conf.${iface}.disable_ipv6=0
ExecStart=/bin/sh -c 'ip -6 addr replace ${node_ip6}/64 dev ${iface} nodad'

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now enforcer-lab-ipv6.service
systemctl restart enforcer-lab-ipv6.service

swapoff -a
sed -i '/\sswap\s/d' /etc/fstab

cat >/etc/modules-load.d/k8s.conf <<CONF
overlay
br_netfilter
CONF
modprobe overlay
modprobe br_netfilter
cat >/etc/sysctl.d/99-k8s.conf <<CONF
net.ipv4.ip_forward = 1
net.ipv6.conf.all.forwarding = 1
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
CONF
sysctl --system >/dev/null

apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  apt-transport-https ca-certificates curl gpg containerd iptables conntrack socat ethtool

# kubelet wants the systemd cgroup driver; regenerate the config with the CRI plugin enabled.
mkdir -p /etc/containerd
containerd config default | sed 's/SystemdCgroup = false/SystemdCgroup = true/' \
  >/etc/containerd/config.toml
systemctl restart containerd

# Kubernetes' own package repository for kubeadm, kubelet, kubectl and the CNI plugins.
keyring=/etc/apt/keyrings/kubernetes-apt-keyring.gpg
mkdir -p /etc/apt/keyrings
if [ ! -s "$keyring" ]; then
  curl -fsSL "https://pkgs.k8s.io/core:/stable:/v${k8s_minor}/deb/Release.key" |
    gpg --dearmor -o "$keyring"
fi
echo "deb [signed-by=$keyring] https://pkgs.k8s.io/core:/stable:/v${k8s_minor}/deb/ /" \
  >/etc/apt/sources.list.d/kubernetes.list
apt-get update -qq
apt-get install -y -qq kubelet kubeadm kubectl kubernetes-cni
apt-mark hold kubelet kubeadm kubectl >/dev/null

# Both addresses, so the node is dual-stack and on the private network.
echo "KUBELET_EXTRA_ARGS=--node-ip=${node_ip},${node_ip6}" >/etc/default/kubelet
systemctl enable kubelet
