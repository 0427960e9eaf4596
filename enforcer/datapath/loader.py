"""Compile bpf/enforcer.c with bcc, once per process.

bcc rewrites map calls (`ct.lookup(...)`) only in the main file, not in #included headers,
so the sources (split by concern under bpf/lib/) are inlined into one text here.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enforcer.datapath.layout import DatapathConfig
from enforcer.kheaders import HeaderChoice, configure_bcc_headers

# A checkout has the C sources beside the package; an installed package (the image) does not,
# and is told where they are.
BPF_DIR_ENV = "ENFORCER_BPF_DIR"
CHECKOUT_BPF_DIR = Path(__file__).resolve().parents[2] / "bpf"
_INCLUDE = re.compile(r'^\s*#include "(lib/[\w.]+)"\s*$')
# No debug info. bcc would build BTF and line info from it, and nothing here reads them: maps
# are read through bcc's own table descriptions, and no map holds a type that needs BTF. They
# cost about a fifth of clang's time (0.5 s of 2.8 on an Intel Xeon). The instructions are
# the same, byte for byte, with the maps' fds masked.
COMPILE_FLAGS = ("-g0",)


def bpf_dir() -> Path:
    found = Path(os.environ.get(BPF_DIR_ENV) or CHECKOUT_BPF_DIR)
    if not (found / "enforcer.c").is_file():
        raise FileNotFoundError(
            f"BPF sources not found: no enforcer.c in {found} (set {BPF_DIR_ENV} to the "
            "directory holding bpf/enforcer.c and bpf/lib/)")
    return found


def program_source() -> str:
    root = bpf_dir()
    seen: set[str] = set()

    def expand(path: Path) -> list[str]:
        out = [f"/* --- {path.relative_to(root)} --- */"]
        for line in path.read_text().splitlines():
            m = _INCLUDE.match(line)
            if m:
                if m.group(1) not in seen:
                    seen.add(m.group(1))
                    out.extend(expand(root / m.group(1)))
            elif line.strip() != "#pragma once":
                out.append(line)
        return out

    return "\n".join(expand(root / "enforcer.c")) + "\n"


# The programs' functions in bpf/enforcer.c, also their names in the kernel (TCX finds ours
# by them; at most 15 characters are kept).
FROM_POD_FUNC = "tc_from_pod"
TO_POD_FUNC = "tc_to_pod"
NODE_EGRESS_FUNC = "tc_node_egress"


@dataclass
class LoadedProgram:
    bpf: Any  # bcc.BPF: keeps the program fds and the ring buffer alive
    from_pod_fd: int  # tc ingress of the host veth (the pod's egress)
    to_pod_fd: int  # tc egress of the host veth (the pod's ingress)
    from_pod_name: str
    to_pod_name: str
    compile_seconds: float
    headers: HeaderChoice
    node_egress_fd: int = -1  # tc egress of the node's other interfaces (lib/services.h)
    node_egress_name: str = "enforcer_node_egress"


def compile_program(cfg: DatapathConfig, pin_dir: Path) -> LoadedProgram:
    headers = configure_bcc_headers()
    from bcc import BPF  # imported late: importing bcc alone costs ~70 MB

    start = time.monotonic()
    bpf = BPF(text=program_source().encode(), cflags=[*cfg.cflags(pin_dir), *COMPILE_FLAGS])
    from_pod = bpf.load_func(FROM_POD_FUNC.encode(), BPF.SCHED_CLS)
    to_pod = bpf.load_func(TO_POD_FUNC.encode(), BPF.SCHED_CLS)
    node_egress = bpf.load_func(NODE_EGRESS_FUNC.encode(), BPF.SCHED_CLS)
    elapsed = time.monotonic() - start
    return LoadedProgram(bpf, from_pod.fd, to_pod.fd, "enforcer_from_pod", "enforcer_to_pod",
                         elapsed, headers, node_egress.fd)
