"""Find kernel headers for bcc, or build a fallback tree from Debian's header packages.

bcc needs `include/linux/kconfig.h` under `/lib/modules/$(uname -r)/build`. Real nodes and this
machine often lack headers for the running kernel. TC programs use only UAPI headers and stable
structures, so another version's headers work: Debian splits them into `-common` and `-<arch>`
trees, which bcc needs merged into one, so we build a symlink farm in a cache folder.
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "BCC_KERNEL_SOURCE"
# Where the node's /lib/modules, /usr/src and /sys/kernel are looked for (default /): a test
# points it at an empty folder to see the agent without headers; a container could point it
# at the host's root mounted elsewhere.
ROOT_ENV_VAR = "ENFORCER_KERNEL_HEADERS_ROOT"


def _root() -> Path:
    return Path(os.environ.get(ROOT_ENV_VAR) or "/")


class HeadersMissing(RuntimeError):
    """No kernel headers anywhere bcc or our fallback could use; the message says what to
    install."""


@dataclass(frozen=True)
class HeaderChoice:
    path: Path | None  # None: bcc's own discovery (running kernel's headers) will work
    how: str  # "running-kernel", "environment", "fallback", "kheaders-module"


def default_cache_dir() -> Path:
    env = os.environ.get("ENFORCER_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "enforcer"


def _usable(tree: Path) -> bool:
    return (tree / "include" / "linux" / "kconfig.h").exists()


def _debian_pairs(src_root: Path) -> list[tuple[Path, Path]]:
    """(common, arch) header tree pairs, newest version first."""
    pairs = []
    for common in sorted(src_root.glob("linux-headers-*-common"), reverse=True):
        version = common.name.removeprefix("linux-headers-").removesuffix("-common")
        for arch in sorted(src_root.glob(f"linux-headers-{version}-*")):
            if arch != common and not arch.name.endswith("-common"):
                pairs.append((common, arch))
    return pairs


def _merge(common: Path, arch: Path, dest: Path) -> Path:
    stamp = dest / ".enforcer-merged"
    if stamp.exists():
        return dest
    tmp = dest.with_name(dest.name + ".tmp")
    subprocess.run(["rm", "-rf", str(tmp)], check=True)
    tmp.mkdir(parents=True)
    # Symlinks, not copies: cheap, and the packages stay the owners of the files.
    subprocess.run(["cp", "-rs", f"{common}/.", f"{tmp}/"], check=True)
    subprocess.run(["cp", "-rsf", "--remove-destination", f"{arch}/.", f"{tmp}/"], check=True)
    (tmp / ".enforcer-merged").write_text(f"{common}\n{arch}\n")
    subprocess.run(["rm", "-rf", str(dest)], check=True)
    tmp.rename(dest)
    return dest


def missing_message(release: str, root: Path) -> str:
    """What is wrong and what to do, in one line."""
    where = "" if root == Path("/") else f" under {root} ({ROOT_ENV_VAR})"
    return (
        f"no kernel headers for {release}{where}: looked in /lib/modules/{release}/build, "
        "/sys/kernel/kheaders.tar.xz and /usr/src/linux-headers-*; on the node install "
        f"linux-headers-{release} (Debian/Ubuntu; on Debian linux-headers-amd64 or "
        "linux-headers-arm64 also works) or load the kheaders module (modprobe kheaders), "
        "or set BCC_KERNEL_SOURCE to a header tree; the DaemonSet mounts the node's "
        "/lib/modules and /usr/src; `enforcer kernel-headers` checks"
    )


def find_kernel_headers(
    cache_dir: Path | None = None, src_root: Path | None = None, release: str | None = None
) -> HeaderChoice:
    """Choose headers for bcc; builds the fallback tree when needed. Raises HeadersMissing
    when none exist."""
    env = os.environ.get(ENV_VAR)
    if env and _usable(Path(env)):
        return HeaderChoice(Path(env), "environment")
    root = _root()
    release = release or platform.release()
    running = root / "lib" / "modules" / release / "build"
    if (running / "include" / "linux" / "kconfig.h").exists():
        # bcc finds them itself at the real root; elsewhere it must be told.
        return HeaderChoice(None if root == Path("/") else running, "running-kernel")
    if (root / "sys" / "kernel" / "kheaders.tar.xz").exists():
        return HeaderChoice(None, "kheaders-module")
    pairs = _debian_pairs(src_root or root / "usr" / "src")
    if not pairs:
        raise HeadersMissing(missing_message(release, root))
    common, arch = pairs[0]
    dest = (cache_dir or default_cache_dir()) / "kernel-headers" / arch.name
    return HeaderChoice(_merge(common, arch, dest), "fallback")


def configure_bcc_headers(cache_dir: Path | None = None) -> HeaderChoice:
    """Point bcc at usable headers (sets BCC_KERNEL_SOURCE when a fallback is used)."""
    choice = find_kernel_headers(cache_dir)
    if choice.path is not None:
        os.environ[ENV_VAR] = str(choice.path)
    return choice
