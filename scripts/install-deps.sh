#!/usr/bin/env bash
# Installs the Debian packages the enforcer needs at run time and in tests.
# Idempotent: does nothing when every package is already installed. The image's
# Dockerfile runs this same script, so CI exercises the image's install path.
set -euo pipefail

runtime=(python3 python3-venv python3-pip python3-bpfcc iproute2 kmod linux-headers-amd64 ca-certificates)
# Tests and benchmarks: packet tools, the iptables baseline, nft for the lab's kube-proxy in
# nftables mode, a real Prometheus, linters, and the browser the console's page is tested in
# (headless; Playwright drives it, never its own).
testing=(iperf3 iptables nftables ipset tcpdump iputils-ping prometheus shellcheck ruby chromium)

want=("${runtime[@]}")
if [ "${1:-}" != "--runtime-only" ]; then
  want+=("${testing[@]}")
fi

missing=()
for pkg in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#want[@]} Debian packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
