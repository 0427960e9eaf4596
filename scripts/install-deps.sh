#!/usr/bin/env bash
# Installs the Debian packages the enforcer needs at run time and in tests.
# Idempotent: does nothing when every package is already installed. The image's
# Dockerfile runs this same script, so CI exercises the image's install path.
#   install-deps.sh                 runtime and test packages (make setup)
#   install-deps.sh --runtime-only  what the image needs at run time (the Dockerfile)
#   install-deps.sh --image         the image's own set (the Dockerfile): the runtime set
#                                   without pip, and Debian's kernel headers unpacked into
#                                   /usr/src rather than installed (see below)
#   install-deps.sh --image-build   the tools `make image` builds the image with (on the host)
set -euo pipefail

runtime=(python3 python3-venv python3-pip python3-bpfcc iproute2 kmod linux-headers-amd64 ca-certificates)
# Tests and benchmarks: packet tools, the iptables baseline, nft for the lab's kube-proxy in
# nftables mode, a real Prometheus, linters, and the browser the console's page is tested in
# (headless; Playwright drives it, never its own).
testing=(iperf3 iptables nftables ipset tcpdump iputils-ping prometheus shellcheck ruby chromium)

# Building the image without Docker or a registry (scripts/build-image.sh): podman and
# buildah (rootful, chroot isolation), Debian's runc (crun fails on hybrid cgroups), debootstrap
# for the base image; uidmap and fuse-overlayfs are what podman recommends and we leave out.
image_build=(podman buildah runc debootstrap)

# The image: bcc's compile needs the header trees, not linux-headers-amd64's dependencies (gcc,
# binutils, kbuild: 100 MB nothing runs); the venv's pip comes with python3-venv.
image=(python3 python3-venv python3-bpfcc iproute2 kmod ca-certificates)
headers_meta=linux-headers-amd64

case "${1:-}" in
  --runtime-only) want=("${runtime[@]}") ;;
  --image) want=("${image[@]}") ;;
  --image-build) want=("${image_build[@]}") ;;
  "") want=("${runtime[@]}" "${testing[@]}") ;;
  *) echo "install-deps: unknown option ${1} (--runtime-only, --image, --image-build or none)" >&2; exit 2 ;;
esac

missing=()
for pkg in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

# The header trees of the version linux-headers-amd64 points at (-common and -amd64), unpacked
# into /usr/src where kheaders.py looks for them; dpkg does not know them.
unpack_headers() {
  local arch_pkg common_pkg tmp deb
  arch_pkg="$(apt-cache depends "$headers_meta" | awk '/Depends: linux-headers-/ { print $2; exit }')"
  common_pkg="$(apt-cache depends "$arch_pkg" | awk '/Depends: linux-headers-.*-common$/ { print $2; exit }')"
  if [ -z "$arch_pkg" ] || [ -z "$common_pkg" ]; then
    echo "install-deps: cannot resolve $headers_meta's header packages" >&2
    exit 1
  fi
  tmp="$(mktemp -d)"
  (cd "$tmp" && apt-get download -qq "$arch_pkg" "$common_pkg")
  for deb in "$tmp"/*.deb; do
    dpkg-deb -x "$deb" "$tmp/root"
  done
  mkdir -p /usr/src
  cp -a "$tmp"/root/usr/src/linux-headers-* /usr/src/
  rm -rf "$tmp"
  echo "install-deps: unpacked $common_pkg and $arch_pkg into /usr/src"
}

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#want[@]} Debian packages present"
  if [ "${1:-}" != --image ] || compgen -G "/usr/src/linux-headers-*-common" >/dev/null; then
    exit 0
  fi
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [ "${1:-}" = --image ]; then
  unpack_headers
fi
