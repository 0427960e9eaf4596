"""DatapathConfig.attach_mode: "auto" takes TCX exactly where the kernel has it (6.6+), and a
bad value is an error naming the field."""

from __future__ import annotations

import os

import pytest

from enforcer.datapath import tcx

pytestmark = pytest.mark.kernel


def _kernel_has_tcx() -> bool:
    major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    return (major, minor) >= (6, 6)


def test_auto_takes_tcx_where_the_kernel_has_it() -> None:
    assert tcx.supported() == _kernel_has_tcx()
    assert tcx.resolve_attach_mode("auto") == ("tcx" if _kernel_has_tcx() else "tc")
    assert tcx.resolve_attach_mode("tc") == "tc"


def test_a_bad_attach_mode_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"DatapathConfig\.attach_mode: 'xdp' is not one of"):
        tcx.resolve_attach_mode("xdp")
