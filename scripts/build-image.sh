#!/usr/bin/env bash
# `make image`: builds daemonset/Dockerfile into the local podman storage as enforcer:dev, with
# no Docker engine and no registry (see daemonset/README.md, "Build the image").
#
#   1. installs podman, buildah, runc and debootstrap (scripts/install-deps.sh --image-build);
#   2. makes the base the Dockerfile's FROM names (debian:bookworm-slim) with debootstrap,
#      cached as a tarball under .cache/image/ (a second run skips it), and imports it under
#      that name so `podman build --pull=never` finds it locally;
#   3. builds the Dockerfile with chroot isolation (no network namespace or interface is made:
#      RUN steps use the host's network), the host's CA bundle mounted for the build only.
#
# Environment: ENFORCER_IMAGE (default enforcer:dev), ENFORCER_IMAGE_CACHE (default
# .cache/image), DEBIAN_MIRROR (default http://deb.debian.org/debian), HOST_CA (default
# /etc/ssl/certs/ca-certificates.crt). Runs as root.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

image="${ENFORCER_IMAGE:-enforcer:dev}"
cache="${ENFORCER_IMAGE_CACHE:-$repo/.cache/image}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
host_ca="${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}"
export CONTAINERS_CONF="$repo/scripts/podman-containers.conf"

log() { echo "build-image: $*" >&2; }
elapsed() { echo "$(( $(date +%s) - $1 )) s"; }

if [ "$(id -u)" != 0 ]; then
  log "run as root (podman builds rootful, debootstrap needs root)"
  exit 1
fi

start=$(date +%s)
bash scripts/install-deps.sh --image-build >&2

# The base: the name the Dockerfile's FROM uses, as podman spells it.
from="$(awk 'toupper($1) == "FROM" { print $2; exit }' daemonset/Dockerfile)"
case "$from" in
  */*/*) base="$from" ;;
  */*) base="docker.io/$from" ;;
  *) base="docker.io/library/$from" ;;
esac
suite="${from##*:}"
suite="${suite%-slim}"

mkdir -p "$cache"
# Made again when this script (how the base is made) or the mirror changes, and after a week
# (Debian's updates reach the base's own packages only so).
key="$( (cat "$0"; echo "$mirror") | sha256sum | cut -c1-12)"
tarball="$cache/debian-$suite-minbase-$key.tar"
if [ -n "$(find "$tarball" -mtime +7 2>/dev/null)" ]; then
  rm -f "$tarball"
fi
if [ ! -s "$tarball" ]; then
  find "$cache" -maxdepth 1 -name "debian-$suite-minbase*.tar" -delete
  t=$(date +%s)
  rootfs="$(mktemp -d "$cache/rootfs.XXXXXX")"
  trap 'rm -rf "$rootfs" "$tarball.tmp"' EXIT
  log "debootstrap --variant=minbase $suite from $mirror"
  debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || { tail -20 "$cache/debootstrap.log" >&2; exit 1; }
  # As Debian's own -slim images: no docs, man pages or translations from later installs, no
  # downloaded .debs kept, and the security and updates suites in the sources.
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
CFG
  cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
  cat >"$rootfs/etc/apt/sources.list" <<SRC
deb $mirror $suite main
deb $mirror $suite-updates main
deb http://deb.debian.org/debian-security $suite-security main
SRC
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* \
    "$rootfs"/var/log/* "$rootfs"/tmp/*
  tar -C "$rootfs" --numeric-owner -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  rm -rf "$rootfs"
  trap - EXIT
  log "base made in $(elapsed "$t"): $(du -h "$tarball" | cut -f1)"
else
  log "base cached: $tarball"
fi

# Import it unless the image under that name is this very tarball.
digest="$(sha256sum "$tarball" | cut -c1-64)"
have="$(podman image inspect --format '{{ index .Labels "dev.enforcer.base-tarball" }}' "$base" 2>/dev/null || true)"
if [ "$have" != "$digest" ]; then
  log "importing the base as $base"
  podman import --change "LABEL dev.enforcer.base-tarball=$digest" \
    --change 'CMD ["/bin/bash"]' "$tarball" "$base" >/dev/null
fi

t=$(date +%s)
ca_args=()
if [ -s "$host_ca" ]; then
  # For the build only: a volume is not part of any layer, and PIP_CERT is an ARG, not an ENV.
  ca_args=(-v "$host_ca:/run/host-ca.crt:ro" --build-arg PIP_CERT=/run/host-ca.crt)
fi
old_id="$(podman image inspect --format '{{ .Id }}' "$image" 2>/dev/null || true)"
log "podman build -f daemonset/Dockerfile -t $image"
podman build --isolation chroot --pull=never --layers \
  --ignorefile daemonset/Dockerfile.dockerignore \
  "${ca_args[@]}" -f daemonset/Dockerfile -t "$image" .
# The image this replaced, and its layers no other image uses (the cached steps stay).
new_id="$(podman image inspect --format '{{ .Id }}' "$image")"
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
  podman image rm "$old_id" >/dev/null 2>&1 || true
fi
log "built $image in $(elapsed "$t") ($(elapsed "$start") in all): $(podman image inspect --format '{{ .Size }}' "$image") bytes"
