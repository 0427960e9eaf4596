"""Run the fake API server on its own: `python -m tests.fakeapi --port 8001 --load manifests/`.

Loads the given manifest files/folders (Namespaces, Pods, NetworkPolicies, Nodes, Services,
EndpointSlices) and serves them until interrupted, so an agent or a benchmark in another process
can list and watch them without sharing the GIL with the server.
"""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

import yaml

from tests.fakeapi.server import BY_KIND, FakeKubeAPI


def load(api: FakeKubeAPI, path: Path) -> int:
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    count = 0
    for f in files:
        if f.suffix not in (".yaml", ".yml", ".json"):
            continue
        for doc in yaml.safe_load_all(f.read_text()):
            items = doc.get("items", []) if str(doc.get("kind", "")).endswith("List") else [doc]
            for item in items:
                if isinstance(item, dict) and item.get("kind") in BY_KIND:
                    api.apply(item)
                    count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--load", type=Path, action="append", default=[])
    parser.add_argument("--history", type=int, default=10000, help="events kept for watches")
    parser.add_argument("--bookmark-interval", type=float, default=None)
    args = parser.parse_args()
    api = FakeKubeAPI(
        host=args.host,
        port=args.port,
        history_limit=args.history,
        bookmark_interval=args.bookmark_interval,
    )
    loaded = sum(load(api, p) for p in args.load)
    api.start()
    print(f"serving {loaded} objects on {api.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        api.stop()


if __name__ == "__main__":
    main()
