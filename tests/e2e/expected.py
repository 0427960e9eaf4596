"""What the policy model says about the objects read back from the cluster, through the Python
API and through `enforcer analyze` itself (both must agree)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from enforcer.analysis.matrix import reachability
from enforcer.model.cluster import state_from
from enforcer.model.parse import parse_object

Matrix = dict[str, dict[str, bool]]


def model_matrix(
    objects: list[dict[str, Any]],
    pod_keys: list[str],
    port: int,
    protocol: str,
    family: int | None,
) -> Matrix:
    """Verdicts between the given pods ('ns/pod', real names) from the cluster's objects;
    family 4 or 6 judges that address family, None as `enforcer analyze` does."""
    parsed = [parse_object(obj, origin="cluster") for obj in objects]
    state = state_from([p for p in parsed if p is not None])
    return reachability(state, port, protocol, family=family, pods=pod_keys)


def analyze_cli(objects: list[dict[str, Any]], port: int, protocol: str) -> Matrix:
    """`enforcer analyze --output json` on the objects, written out as one manifest file."""
    with tempfile.TemporaryDirectory(prefix="enforcer-e2e-") as folder:
        path = Path(folder) / "cluster.yaml"
        path.write_text(yaml.safe_dump_all(objects))
        command = [sys.executable, "-m", "enforcer.cli", "analyze", str(path), "--strict"]
        command += ["--port", str(port), "--protocol", protocol, "--output", "json"]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    if result.returncode != 0:
        raise RuntimeError(f"enforcer analyze failed ({result.returncode}): {result.stderr}")
    doc = json.loads(result.stdout)
    assert (doc["port"], doc["protocol"]) == (port, protocol)
    matrix: Matrix = doc["matrix"]
    return matrix
