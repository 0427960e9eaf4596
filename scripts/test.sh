#!/usr/bin/env bash
# make test: the pure tests and the kernel tests at the same time, in two pytest processes.
# The kernel tests run one at a time, as always (two at once on 2 CPUs made allowed probes
# time out: a denied probe is one that times out); the pure tests run beside them, niced so
# that they do not slow the kernel tests' packets and agents. Exit status: 1 if either failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
PYTEST=.venv/bin/pytest
mkdir -p .cache
pure_log=.cache/test-pure.log
nice -n 10 "$PYTEST" -q -m "not kernel" -p no:cacheprovider --durations=10 tests \
    >"$pure_log" 2>&1 &
pure_pid=$!
# Whatever ends this script ends the pure run too.
trap 'kill "$pure_pid" 2>/dev/null' EXIT
"$PYTEST" -q -m kernel --durations=20 tests
kernel_rc=$?
wait "$pure_pid"
pure_rc=$?
trap - EXIT
echo
echo "=== the pure tests (not kernel), run beside the kernel tests ==="
cat "$pure_log"
echo "kernel tests: exit $kernel_rc; pure tests: exit $pure_rc"
[ "$kernel_rc" -eq 0 ] && [ "$pure_rc" -eq 0 ]
