#!/usr/bin/env bash
# Runs the end-to-end suite (tests/e2e) against the cluster in the kubeconfig given as $1.
# Used by kind-e2e.sh and vagrant-e2e.sh. The suite needs only the Kubernetes client and the
# pure policy model, so on a laptop without bcc a plain venv (.cache/venv-e2e) is enough.
set -euo pipefail
cd "$(dirname "$0")/.."

kubeconfig="$1"
shift

if [ -x .venv/bin/python ]; then
  py=.venv/bin/python
else
  if [ ! -x .cache/venv-e2e/bin/python ]; then
    python3 -m venv .cache/venv-e2e
    .cache/venv-e2e/bin/pip install -q --disable-pip-version-check -e '.[test]'
  fi
  py=.cache/venv-e2e/bin/python
fi

ENFORCER_E2E_KUBECONFIG="$(cd "$(dirname "$kubeconfig")" && pwd)/$(basename "$kubeconfig")" \
  exec "$py" -m pytest -m e2e -p no:cacheprovider --timeout=900 tests/e2e "$@"
