"""`python -m tests.agent.enforced_agent ARGS...`: the CLI (`enforcer ARGS...`) with the
cluster-scoped policies enforced (enforcer.model.clusterpolicy.ENFORCED), whatever the
build's switch says, so the agent tests run the whole path from the API to the kernel for
them. Once the switch is on, this is `python -m enforcer.cli`."""

from __future__ import annotations

import sys

from enforcer.model import clusterpolicy

clusterpolicy.ENFORCED = True

from enforcer.cli import main  # noqa: E402  (after the switch: modules read it at import too)

if __name__ == "__main__":
    sys.exit(main())
