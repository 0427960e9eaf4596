"""An order-independent digest of a set of objects, updated in O(1) per change.

The agent publishes the digest of the objects it has enforced; a client that knows which
objects it wrote (the lab) computes the same digest and so knows when a change is in force.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any


def object_hash(obj: Mapping[str, Any]) -> int:
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return int.from_bytes(hashlib.blake2b(canonical.encode(), digest_size=8).digest(), "big")


def set_digest(objects: Iterable[Mapping[str, Any]]) -> int:
    digest = 0
    for obj in objects:
        digest ^= object_hash(obj)
    return digest
