#!/usr/bin/env bash
# A worker: join the control plane. Arguments: NODE_IPV4 NODE_IPV6 CONTROL_PLANE_IP TOKEN.
set -euo pipefail

node_ip="$1"
node_ip6="$2"
control_plane_ip="$3"
token="$4"

if [ -f /etc/kubernetes/kubelet.conf ]; then
  exit 0  # already joined
fi

for _ in $(seq 1 120); do
  if curl -ksf "https://${control_plane_ip}:6443/readyz" >/dev/null; then
    break
  fi
  sleep 5
done

# A throwaway lab on a private network: the token alone authenticates the join, so the CA
# hash is not pinned (it would have to travel from the control plane first).
cat >/root/kubeadm-join.yaml <<YAML
apiVersion: kubeadm.k8s.io/v1beta3
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: "${control_plane_ip}:6443"
    token: "${token}"
    unsafeSkipCAVerification: true
nodeRegistration:
  kubeletExtraArgs:
    node-ip: "${node_ip},${node_ip6}"
YAML
kubeadm join --config /root/kubeadm-join.yaml
