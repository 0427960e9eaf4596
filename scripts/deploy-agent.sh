#!/usr/bin/env bash
# Applies daemonset/ with the given image (already present on the nodes) to the cluster in
# $KUBECONFIG and waits until every node's agent is ready. Used by kind-e2e.sh and
# vagrant-e2e.sh. kubectl's built-in kustomize renders the kustomization.
set -euo pipefail
cd "$(dirname "$0")/.."

image="${1:-enforcer:dev}"
name="${image%:*}"
tag="${image##*:}"

overlay="$(mktemp -d)"
trap 'rm -rf "$overlay"' EXIT
# An overlay that points the kustomization at the image under test.
cp -r daemonset "$overlay/base"
cat >"$overlay/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - base
images:
  - name: enforcer
    newName: $name
    newTag: $tag
YAML

kubectl apply -k "$overlay"
kubectl -n enforcer-system rollout status daemonset/enforcer-agent --timeout=10m
kubectl -n enforcer-system get pods -o wide
