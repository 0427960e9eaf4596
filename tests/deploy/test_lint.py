"""Static checks of what cannot run here: shell scripts, the Vagrantfile, the make targets."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .render import REPO

SHELL_SHEBANG = re.compile(rb"#!\S*/(?:env\s+)?(?:ba|da)?sh\b")
SKIP_DIRS = {".git", ".venv", ".cache", "node_modules", ".vagrant", "build"}


def _shell_scripts() -> list[Path]:
    """Every *.sh and every file with a sh/bash shebang in the repository (a few hundred files)."""
    found = []
    for path in sorted(REPO.rglob("*")):
        rel = path.relative_to(REPO)
        if any(part in SKIP_DIRS or part.endswith(".egg-info") for part in rel.parts):
            continue
        if not path.is_file() or path.suffix in {".py", ".md", ".json", ".yaml", ".yml"}:
            continue
        if path.suffix == ".sh":
            found.append(path)
            continue
        with path.open("rb") as f:
            first = f.readline(100)
        if SHELL_SHEBANG.match(first):
            found.append(path)
    return found


SCRIPTS = _shell_scripts()


def test_the_deploy_scripts_are_among_those_linted() -> None:
    names = {p.relative_to(REPO).as_posix() for p in SCRIPTS}
    assert {
        "scripts/install-deps.sh",
        "scripts/kind-e2e.sh",
        "scripts/vagrant-e2e.sh",
        "daemonset/entrypoint.sh",
        "vagrant/provision/common.sh",
    } <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.relative_to(REPO).as_posix() for p in SCRIPTS])
def test_shellcheck(script: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck missing: scripts/install-deps.sh installs it"
    result = subprocess.run(
        [shellcheck, "--external-sources", str(script)],
        cwd=script.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_vagrantfile_is_valid_ruby() -> None:
    ruby = shutil.which("ruby")
    assert ruby, "ruby missing: scripts/install-deps.sh installs it"
    result = subprocess.run(
        [ruby, "-c", str(REPO / "vagrant" / "Vagrantfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "Syntax OK" in result.stdout


def test_vagrantfile_defines_one_control_plane_two_workers_and_both_providers() -> None:
    text = (REPO / "vagrant" / "Vagrantfile").read_text()
    assert 'provider "libvirt"' in text and 'provider "virtualbox"' in text
    for script in ("common.sh", "control-plane.sh", "worker.sh"):
        assert f"provision/{script}" in text
        assert (REPO / "vagrant" / "provision" / script).is_file()


@pytest.mark.parametrize(
    ("target", "script"),
    [("kind-e2e", "scripts/kind-e2e.sh"), ("vagrant-e2e", "scripts/vagrant-e2e.sh")],
)
def test_make_target_runs_its_script(target: str, script: str) -> None:
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", target],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"bash {script}" in result.stdout
