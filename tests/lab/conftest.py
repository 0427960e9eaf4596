from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from enforcer.lab import lab


@pytest.fixture
def write_manifests(tmp_path: Path) -> Callable[[list[dict[str, Any]]], Path]:
    counter = iter(range(10**6))

    def write(objects: list[dict[str, Any]]) -> Path:
        path = tmp_path / f"m{next(counter)}.yaml"
        path.write_text(yaml.safe_dump_all(objects))
        return path

    return write


@pytest.fixture
def lab_factory() -> Iterator[Callable[..., lab.LabState]]:
    names: list[str] = []

    def make(paths: list[Path], **kwargs: Any) -> lab.LabState:
        name = f"t{secrets.token_hex(3)}"
        names.append(name)
        return lab.up(paths, name, **kwargs)

    try:
        yield make
    finally:
        for name in names:
            lab.down(name)
        leftover = [n for n in names if n in lab.list_labs()]
        assert not leftover, f"labs not removed: {leftover}"
