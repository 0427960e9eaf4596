"""The image's install path, run on this machine: the same script and venv the Dockerfile uses."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .render import DAEMONSET_DIR, REPO

DOCKERFILE = DAEMONSET_DIR / "Dockerfile"
INSTALL = "scripts/install-deps.sh"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _packages(name: str = "runtime") -> list[str]:
    text = (REPO / INSTALL).read_text()
    match = re.search(rf"^{name}=\(([^)]*)\)", text, re.MULTILINE)
    assert match, f"install-deps.sh defines {name}=(...)"
    return match.group(1).split()


def _runtime_packages() -> list[str]:
    return _packages("runtime")


def test_the_images_packages_are_the_runtime_set_without_pip_and_the_header_packages() -> None:
    """The image installs the runtime set but for pip (the venv has its own) and
    linux-headers-amd64, whose header trees it unpacks instead (its gcc, binutils and kbuild
    dependencies are 100 MB nothing in the image runs)."""
    assert set(_packages("runtime")) - set(_packages("image")) == {
        "python3-pip",
        "linux-headers-amd64",
    }
    assert set(_packages("image")) <= set(_packages("runtime"))


def test_dockerfile_runs_the_ci_install_script_then_installs_into_a_system_site_venv() -> None:
    steps = _instructions()
    assert steps[0] == ("FROM", "debian:bookworm-slim")
    kinds = [k for k, _ in steps]
    copy_script = steps.index(("COPY", f"{INSTALL} {INSTALL}"))
    (run_script,) = [i for i, (k, a) in enumerate(steps) if k == "RUN" and INSTALL in a]
    assert copy_script < run_script
    assert f"bash {INSTALL} --image" in steps[run_script][1]
    (run_venv,) = [i for i, (k, a) in enumerate(steps) if k == "RUN" and " venv " in a]
    venv = steps[run_venv][1]
    assert "/usr/bin/python3 -m venv --system-site-packages /opt/enforcer/venv" in venv
    assert "/opt/enforcer/venv/bin/pip install" in venv
    assert run_script < run_venv
    assert kinds.count("ENTRYPOINT") == 1
    entry = dict(steps)["ENTRYPOINT"]
    assert entry == '["/opt/enforcer/entrypoint.sh"]'
    assert (
        "COPY",
        "daemonset/entrypoint.sh /opt/enforcer/entrypoint.sh",
    ) in steps
    assert 'exec enforcer agent "$@"' in (DAEMONSET_DIR / "entrypoint.sh").read_text()


def test_every_copied_source_exists_and_passes_the_dockerignore() -> None:
    ignore = (DAEMONSET_DIR / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for kind, args in _instructions():
        if kind == "COPY":
            *sources, _dest = shlex.split(args)
            for src in sources:
                assert (REPO / src).exists(), src
                assert src.rstrip("/") in allowed, f"{src} is excluded from the build context"


def test_install_script_runtime_only_is_idempotent_and_leaves_a_working_bcc() -> None:
    for _ in range(2):  # the second run finds everything installed and changes nothing
        result = subprocess.run(
            ["bash", INSTALL, "--runtime-only"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    packages = _runtime_packages()
    assert f"all {len(packages)} Debian packages present" in result.stdout
    status = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${Status}\n", *packages],
        capture_output=True,
        text=True,
    )
    installed = {ln.split()[0] for ln in status.stdout.splitlines() if "install ok installed" in ln}
    assert installed == set(packages)
    # The image moves these header trees out of /usr/src: they must be where it looks.
    assert list(Path("/usr/src").glob("linux-headers-*-common"))


def test_a_venv_made_like_the_images_sees_debians_bcc(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run(
        ["/usr/bin/python3", "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
        check=True,
        timeout=120,
    )
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import bcc, sys; print(bcc.__file__, sys.prefix)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    bcc_file, prefix = result.stdout.split()
    assert bcc_file.startswith("/usr/lib/python3/dist-packages/")
    assert prefix == str(venv)


@pytest.fixture
def stub_enforcer(tmp_path: Path) -> Path:
    """An `enforcer` on PATH whose kernel-headers finds nothing (as on a header-less node) and
    whose `agent` prints what it was started with."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "enforcer"
    stub.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = kernel-headers ]; then echo "error: no kernel headers"; exit 1; fi\n'
        'echo "BCC_KERNEL_SOURCE=${BCC_KERNEL_SOURCE:-}"\n'
        'echo "ARGS=$*"\n'
    )
    stub.chmod(0o755)
    return bin_dir


def test_entrypoint_falls_back_to_the_images_headers(tmp_path: Path, stub_enforcer: Path) -> None:
    """On a node without headers, the entrypoint merges the image's (here: this machine's
    /usr/src, where install-deps.sh put them) and starts `enforcer agent` with its arguments."""
    env = {
        "PATH": f"{stub_enforcer}:{Path(sys.executable).parent}:/usr/bin:/bin",
        "ENFORCER_IMAGE_KERNEL_SRC": "/usr/src",
        "ENFORCER_CACHE_DIR": str(tmp_path / "cache"),
        "PYTHONPATH": str(REPO),
    }
    result = subprocess.run(
        ["sh", str(DAEMONSET_DIR / "entrypoint.sh"), "--source=k8s", "--pin-dir=/x"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = dict(ln.split("=", 1) for ln in result.stdout.splitlines())
    assert lines["ARGS"] == "agent --source=k8s --pin-dir=/x"
    tree = Path(lines["BCC_KERNEL_SOURCE"])
    assert tree.is_relative_to(tmp_path / "cache")
    assert (tree / "include" / "linux" / "kconfig.h").exists()
    assert "using the image's" in result.stderr


def test_entrypoint_keeps_a_given_header_tree(tmp_path: Path, stub_enforcer: Path) -> None:
    env = {
        "PATH": f"{stub_enforcer}:/usr/bin:/bin",
        "BCC_KERNEL_SOURCE": "/given",
        "HOME": os.environ.get("HOME", "/root"),
    }
    result = subprocess.run(
        ["sh", str(DAEMONSET_DIR / "entrypoint.sh")], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "BCC_KERNEL_SOURCE=/given" in result.stdout


def _image_env() -> dict[str, str]:
    """The Dockerfile's ENV settings."""
    out: dict[str, str] = {}
    for kind, args in _instructions():
        if kind == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                out[key] = value
    return out


def test_the_installed_package_compiles_from_the_bpf_sources_the_image_ships(
    tmp_path: Path,
) -> None:
    """pip installs the package, not bpf/: the image copies the sources beside it and names
    them in ENFORCER_BPF_DIR. Rebuilt here: the build context the dockerignore lets through,
    installed with pip (not editable), the COPY and ENV of the Dockerfile mapped under tmp."""
    steps = _instructions()
    workdir = Path(dict(steps)["WORKDIR"])
    ignore = (DAEMONSET_DIR / "Dockerfile.dockerignore").read_text().splitlines()
    context = tmp_path / "context"
    for src in (line[1:].rstrip("/") for line in ignore if line.startswith("!")):
        target = context / src
        target.parent.mkdir(parents=True, exist_ok=True)
        if (REPO / src).is_dir():
            shutil.copytree(REPO / src, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / src, target)
    image = tmp_path / "image"  # stands for / in the image
    (copy_bpf,) = [shlex.split(a) for k, a in steps if k == "COPY" and a.startswith("bpf/")]
    shutil.copytree(context / "bpf", image / workdir.relative_to("/") / copy_bpf[1])
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(site), str(context)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    bpf_dir = _image_env()["ENFORCER_BPF_DIR"]
    probe = (
        "import enforcer.datapath.loader as l, sys; "
        f"assert l.__file__.startswith({str(site)!r}), l.__file__; "
        "src = l.program_source(); print(len(src), 'int tc_from_pod' in src)"
    )

    def run(env_dir: str | None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "ENFORCER_BPF_DIR"}
        env["PYTHONPATH"] = str(site)
        if env_dir is not None:
            env["ENFORCER_BPF_DIR"] = env_dir
        return subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)

    shipped = run(str(image / Path(bpf_dir).relative_to("/")))
    assert shipped.returncode == 0, shipped.stderr
    assert shipped.stdout.split()[1] == "True"
    # Without the setting the installed package has no sources: the error names the fix.
    missing = run(None)
    assert missing.returncode != 0
    assert "ENFORCER_BPF_DIR" in missing.stderr
