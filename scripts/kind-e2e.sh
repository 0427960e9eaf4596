#!/usr/bin/env bash
# make kind-e2e: a kind cluster (default CNI off, flannel on, dual-stack), the agent image
# built and loaded into the nodes, the DaemonSet applied and rolled out, then tests/e2e.
# Needs docker, kind, kubectl and curl on an x86-64 Linux or macOS laptop with network access.
# CI cannot run this (no Docker engine there); tests/deploy checks these files statically.
#
# Environment: KIND_CLUSTER (enforcer-e2e), ENFORCER_IMAGE (enforcer:dev),
# KEEP_CLUSTER=1 keeps the cluster afterwards; extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

cluster="${KIND_CLUSTER:-enforcer-e2e}"
image="${ENFORCER_IMAGE:-enforcer:dev}"
flannel_version="${FLANNEL_VERSION:-v0.26.1}"
cni_plugins_version="${CNI_PLUGINS_VERSION:-v1.5.1}"
work=.cache/kind-e2e
kubeconfig="$work/kubeconfig"

for tool in docker kind kubectl curl python3; do
  command -v "$tool" >/dev/null || { echo "kind-e2e: $tool is required" >&2; exit 1; }
done
# The image installs Debian's linux-headers-amd64 (see daemonset/Dockerfile).
case "$(docker info --format '{{.Architecture}}')" in
  x86_64 | amd64) ;;
  *) echo "kind-e2e: the agent image is built for x86-64 nodes only" >&2; exit 1 ;;
esac
mkdir -p "$work"

cleanup() {
  if [ "${KEEP_CLUSTER:-0}" != 1 ]; then
    kind delete cluster --name "$cluster" || true
  else
    echo "kind-e2e: kept cluster $cluster; KUBECONFIG=$kubeconfig"
  fi
}
trap cleanup EXIT

echo "kind-e2e: building $image"
docker build -f daemonset/Dockerfile -t "$image" .

if ! kind get clusters | grep -qx "$cluster"; then
  kind create cluster --name "$cluster" --config daemonset/kind/cluster.yaml
fi
kind get kubeconfig --name "$cluster" >"$kubeconfig"
export KUBECONFIG="$kubeconfig"

# flannel delegates to the reference CNI plugins (bridge, host-local, portmap), which kind's
# node image does not ship: put them on every node.
plugins="$work/cni-plugins-$cni_plugins_version.tgz"
if [ ! -s "$plugins" ]; then
  curl -fsSL -o "$plugins.part" \
    "https://github.com/containernetworking/plugins/releases/download/$cni_plugins_version/cni-plugins-linux-amd64-$cni_plugins_version.tgz"
  mv "$plugins.part" "$plugins"
fi
for node in $(kind get nodes --name "$cluster"); do
  docker exec -i "$node" tar -xzf - -C /opt/cni/bin <"$plugins"
done

echo "kind-e2e: installing flannel $flannel_version (dual-stack)"
kubectl apply -f "https://github.com/flannel-io/flannel/releases/download/$flannel_version/kube-flannel.yml"
net_conf_patch="$(python3 -c 'import json,sys; print(json.dumps({"data": {"net-conf.json": open(sys.argv[1]).read()}}))' daemonset/kind/flannel-net-conf.json)"
kubectl -n kube-flannel patch configmap kube-flannel-cfg --type merge -p "$net_conf_patch"
kubectl -n kube-flannel rollout restart daemonset/kube-flannel-ds
kubectl -n kube-flannel rollout status daemonset/kube-flannel-ds --timeout=5m
kubectl wait --for=condition=Ready nodes --all --timeout=5m

echo "kind-e2e: loading $image into the nodes and deploying the agent"
kind load docker-image "$image" --name "$cluster"
bash scripts/deploy-agent.sh "$image"

ENFORCER_E2E_IMAGE="$image" bash scripts/e2e-pytest.sh "$kubeconfig" "$@"
