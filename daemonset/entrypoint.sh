#!/bin/sh
# The image's entrypoint: `enforcer agent ARGS...`, after making sure bcc has kernel headers.
#
# The DaemonSet mounts the node's /lib/modules and /usr/src read-only so bcc can use headers
# that match the running kernel. That mount hides whatever the image keeps in /usr/src, so the
# Dockerfile moves the image's Debian headers to ENFORCER_IMAGE_KERNEL_SRC. When the node has
# no usable headers, point bcc at a tree merged from those (enforcer/kheaders.py does the merge).
set -eu

image_src="${ENFORCER_IMAGE_KERNEL_SRC:-/opt/enforcer/kernel-src}"

if [ -z "${BCC_KERNEL_SOURCE:-}" ] && ! enforcer kernel-headers >/dev/null 2>&1; then
  BCC_KERNEL_SOURCE="$(python3 -c '
import sys
from pathlib import Path
from enforcer.kheaders import find_kernel_headers
choice = find_kernel_headers(src_root=Path(sys.argv[1]))
print(choice.path or "")
' "$image_src")"
  export BCC_KERNEL_SOURCE
  echo "entrypoint: node has no kernel headers; using the image's: ${BCC_KERNEL_SOURCE}" >&2
fi

exec enforcer agent "$@"
