#!/usr/bin/env bash
# make test: the kernel tests one at a time, as always (two at once on 2 CPUs made allowed
# probes time out: a denied probe is one that times out), and the pure tests beside most of
# them in a second pytest process at the lowest CPU priority. The agent's kernel tests go
# first, alone: their probe loops time single connections across an agent's restart.
# Exit status: 1 if any part failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
PYTEST=.venv/bin/pytest
mkdir -p .cache
pure_log=.cache/test-pure.log

"$PYTEST" -q -m kernel --durations=5 tests/agent
agent_rc=$?

nice -n 19 "$PYTEST" -q -m "not kernel" -p no:cacheprovider --durations=10 tests \
    >"$pure_log" 2>&1 &
pure_pid=$!
# Whatever ends this script ends the pure run too.
trap 'kill "$pure_pid" 2>/dev/null' EXIT
"$PYTEST" -q -m kernel --durations=20 --ignore=tests/agent tests
kernel_rc=$?
wait "$pure_pid"
pure_rc=$?
trap - EXIT

echo
echo "=== the pure tests (not kernel), run beside the kernel tests ==="
cat "$pure_log"
echo "agent kernel tests: exit $agent_rc; other kernel tests: exit $kernel_rc;" \
     "pure tests: exit $pure_rc"
[ "$agent_rc" -eq 0 ] && [ "$kernel_rc" -eq 0 ] && [ "$pure_rc" -eq 0 ]
