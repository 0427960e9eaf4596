#!/usr/bin/env bash
# The control plane: kubeadm init (dual-stack), flannel on the private network, podman to
# build the agent image. Arguments: NODE_IPV4 NODE_IPV6 BOOTSTRAP_TOKEN.
set -euo pipefail

node_ip="$1"
node_ip6="$2"
token="$3"
flannel_version="${FLANNEL_VERSION:-v0.26.1}"
export DEBIAN_FRONTEND=noninteractive
export KUBECONFIG=/etc/kubernetes/admin.conf

# podman builds daemonset/Dockerfile inside the VM; vagrant-e2e.sh imports the image into
# every node's containerd.
apt-get install -y -qq --no-install-recommends podman python3

if [ ! -f /etc/kubernetes/admin.conf ]; then
  cat >/root/kubeadm.yaml <<YAML
apiVersion: kubeadm.k8s.io/v1beta3
kind: InitConfiguration
bootstrapTokens:
  - token: "${token}"
    ttl: "24h"
localAPIEndpoint:
  advertiseAddress: "${node_ip}"
nodeRegistration:
  kubeletExtraArgs:
    node-ip: "${node_ip},${node_ip6}"
---
apiVersion: kubeadm.k8s.io/v1beta3
kind: ClusterConfiguration
controlPlaneEndpoint: "${node_ip}:6443"
networking:
  podSubnet: "10.244.0.0/16,fd00:10:244::/56"
  serviceSubnet: "10.96.0.0/16,fd00:10:96::/112"
YAML
  kubeadm init --config /root/kubeadm.yaml --upload-certs
fi

mkdir -p /home/vagrant/.kube
cp /etc/kubernetes/admin.conf /home/vagrant/.kube/config
chown -R vagrant:vagrant /home/vagrant/.kube

# flannel, on the private network (its default is the NAT interface, the same on every VM),
# with the same dual-stack ranges as the kind cluster.
kubectl apply -f "https://github.com/flannel-io/flannel/releases/download/${flannel_version}/kube-flannel.yml"
net_conf="$(cat /enforcer/daemonset/kind/flannel-net-conf.json)"
kubectl -n kube-flannel patch configmap kube-flannel-cfg --type merge \
  -p "$(python3 -c 'import json,sys; print(json.dumps({"data": {"net-conf.json": sys.argv[1]}}))' "$net_conf")"
if ! kubectl -n kube-flannel get daemonset kube-flannel-ds -o jsonpath='{.spec.template.spec.containers[0].args}' |
  grep -q iface-regex; then
  kubectl -n kube-flannel patch daemonset kube-flannel-ds --type json -p \
    '[{"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--iface-regex=^192\\.168\\.56\\."}]'
fi
kubectl -n kube-flannel rollout status daemonset/kube-flannel-ds --timeout=10m
