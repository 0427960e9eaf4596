#!/usr/bin/env bash
# make vagrant-e2e: three kubeadm VMs (vagrant/Vagrantfile), the agent image built with podman
# in the control-plane VM and imported into every node's containerd, the DaemonSet applied and
# rolled out, then tests/e2e from this machine through the API server.
# Needs vagrant with libvirt or VirtualBox, kubectl and python3. Not run in CI (no hypervisor).
#
# Environment: VAGRANT_DEFAULT_PROVIDER (libvirt|virtualbox), KEEP_CLUSTER=1 keeps the VMs;
# extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

image="docker.io/library/enforcer:dev"
nodes=(cp worker-1 worker-2)
state=vagrant/.vagrant
kubeconfig="$state/kubeconfig"
ssh_config="$state/ssh-config"

for tool in vagrant kubectl python3 ssh; do
  command -v "$tool" >/dev/null || { echo "vagrant-e2e: $tool is required" >&2; exit 1; }
done

cleanup() {
  if [ "${KEEP_CLUSTER:-0}" != 1 ]; then
    (cd "$repo/vagrant" && vagrant destroy -f) || true
  else
    echo "vagrant-e2e: kept the VMs; KUBECONFIG=$repo/$kubeconfig"
  fi
}
trap cleanup EXIT

(cd vagrant && vagrant up && vagrant rsync cp)
(cd vagrant && vagrant ssh-config) >"$ssh_config"
on() {
  local node="$1"
  shift
  ssh -F "$ssh_config" -o LogLevel=ERROR "$node" "$@"
}

echo "vagrant-e2e: building the agent image in the control-plane VM"
on cp "cd /enforcer && sudo podman build -f daemonset/Dockerfile -t $image ."
for node in "${nodes[@]}"; do
  echo "vagrant-e2e: importing the image on $node"
  on cp "sudo podman save $image" | on "$node" "sudo ctr -n k8s.io images import -"
done

on cp "sudo cat /etc/kubernetes/admin.conf" >"$kubeconfig"
export KUBECONFIG="$repo/$kubeconfig"
kubectl wait --for=condition=Ready nodes --all --timeout=10m

bash scripts/deploy-agent.sh "$image"
ENFORCER_E2E_IMAGE="$image" bash scripts/e2e-pytest.sh "$kubeconfig" "$@"
