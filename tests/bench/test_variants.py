"""`python -m bench.variants`: variant specs are checked, a variant's macros reach the compiler,
and a short run measures no program and the variant in one topology and leaves nothing behind."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import report
from bench.variants import parse_variant
from enforcer.datapath.loader import CHECKOUT_BPF_DIR
from enforcer.lab import topology as topo

pytestmark = pytest.mark.kernel
BPFFS = Path("/sys/fs/bpf")


def _leftovers() -> set[str]:
    pins = {str(p) for p in BPFFS.glob("enf-variant-*")}
    return pins | {ns for ns in topo.existing_netns()
                   if re.match(r"^enf-[0-9a-f]{6}-(client|server)$", ns)}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench.variants", *args],
                          cwd=report.REPO_ROOT, capture_output=True, text=True, timeout=240)


def test_a_variant_spec_names_its_sources_and_macros(tmp_path: Path) -> None:
    v = parse_variant(f"exp={CHECKOUT_BPF_DIR}:EXP_A,EXP_B=2")
    assert (v.name, v.source, v.macros) == ("exp", CHECKOUT_BPF_DIR, ("EXP_A", "EXP_B=2"))
    with pytest.raises(argparse.ArgumentTypeError, match=r"no enforcer\.c"):
        parse_variant(f"exp={tmp_path}")
    with pytest.raises(argparse.ArgumentTypeError, match="baseline"):
        parse_variant(f"none={CHECKOUT_BPF_DIR}")
    with pytest.raises(argparse.ArgumentTypeError, match="NAME=DIR"):
        parse_variant(str(CHECKOUT_BPF_DIR))
    assert parse_variant(f"exp={CHECKOUT_BPF_DIR}").attach == "auto"
    v = parse_variant(f"exp={CHECKOUT_BPF_DIR}:EXP_A@tcx")
    assert (v.source, v.macros, v.attach) == (CHECKOUT_BPF_DIR, ("EXP_A",), "tcx")
    with pytest.raises(argparse.ArgumentTypeError, match="attach mode 'xdp'"):
        parse_variant(f"exp={CHECKOUT_BPF_DIR}@xdp")
    # CT_MAX sizes the variant's own table rather than reaching the compiler twice.
    v = parse_variant(f"small={CHECKOUT_BPF_DIR}:EXP_A,CT_MAX=8192+flows")
    assert (v.macros, v.conntrack, v.flows) == (("EXP_A",), 8192, True)
    assert parse_variant(f"exp={CHECKOUT_BPF_DIR}").conntrack is None
    with pytest.raises(argparse.ArgumentTypeError, match="CT_MAX must be a positive"):
        parse_variant(f"exp={CHECKOUT_BPF_DIR}:CT_MAX=lots")


def test_a_variants_macro_reaches_the_compiler(tmp_path: Path) -> None:
    """A copy of the sources that cannot compile with EXP_BROKEN: the run fails naming the
    variant, and leaves no namespace or pin behind."""
    source = tmp_path / "bpf"
    shutil.copytree(CHECKOUT_BPF_DIR, source)
    main = source / "enforcer.c"
    main.write_text("#ifdef EXP_BROKEN\n#error EXP_BROKEN was defined\n#endif\n"
                    + main.read_text())
    before = _leftovers()
    proc = _run("--variant", f"broken={source}:EXP_BROKEN", "--rounds", "1")
    assert proc.returncode != 0
    assert "variant broken" in proc.stderr
    assert _leftovers() <= before


def _rows(stdout: str) -> dict[str, list[str]]:
    """The first table: a row per variant (the CPU tables follow after a blank line)."""
    table = stdout.split("\n\n")[0].splitlines()[1:]
    return {line.split()[0]: line.split()[1:] for line in table}


def test_a_short_run_measures_no_program_and_each_variant(tmp_path: Path) -> None:
    """Both variants measured against no program; with --cpu --stats --json, per connection,
    the busiest CPU's time is about one over the rate (the client is CPU-bound on its own
    CPU), the program ran eight times (SYN, SYN-ACK, ACK and the client's RST, each at both
    pods' veths), and the second variant's time above the first's is split."""
    before = _leftovers()
    out = tmp_path / "samples.json"
    proc = _run("--variant", "main=bpf", "--variant", f"same={CHECKOUT_BPF_DIR}:CT_MAX=4096",
                "--stats", "--cpu", "--json", str(out),
                "--metric", "conn", "--rounds", "2", "--seconds", "0.5", "--rules", "10")
    assert proc.returncode == 0, proc.stderr
    rows = _rows(proc.stdout)
    assert set(rows) == {"none", "main", "same"}
    assert float(rows["none"][1]) == 1.0  # the baseline over itself
    for name in ("main", "same"):
        rate, ratio = float(rows[name][0]), float(rows[name][1])
        # Connections went through the program (its policy allows the client).
        assert rate > 0 and 0.3 < ratio < 1.2
    assert "round 2/2" in proc.stderr
    assert "same from" in proc.stderr and "4096 conntrack entries" in proc.stderr
    assert "µs per connection above main, paired per round" in proc.stdout
    samples = json.loads(out.read_text())
    assert set(samples) == {"none", "main", "same"}
    for name, result in samples.items():
        assert len(result["cpu"]) == 2
        for rate, spent in zip(result["values"], result["cpu"], strict=True):
            busiest = max(v for k, v in spent.items() if k.endswith(" busy"))
            assert 0.5 < busiest / (1e3 / rate) < 2.0, (name, rate, spent)
            assert spent["client"] > 0
            if name == "none":
                assert "program runs" not in spent
            else:
                assert 7.5 < spent["program runs"] < 8.5
                assert spent["program (bpf statistics)"] > 0
    assert _leftovers() <= before


def test_each_attach_mode_runs_its_variant_on_the_traffic() -> None:
    """Each variant's programs are attached only its own way: that both ran (bpf run-time
    statistics) shows each attach mode carried the traffic through them."""
    before = _leftovers()
    proc = _run("--variant", "tc=bpf@tc", "--variant", "tcx=bpf@tcx", "--stats",
                "--metric", "conn", "--rounds", "2", "--seconds", "0.5", "--rules", "10")
    assert proc.returncode == 0, proc.stderr
    rows = _rows(proc.stdout)
    assert set(rows) == {"none", "tc", "tcx"}
    assert len(rows["none"]) == 2  # no program: no run time
    for name in ("tc", "tcx"):
        rate, ratio, ns_per_run = (float(x) for x in rows[name])
        assert rate > 0 and 0.3 < ratio < 1.2 and ns_per_run > 0
    assert "attach mode tcx" in proc.stderr and "attach mode tc\n" in proc.stderr
    assert _leftovers() <= before
