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

# A TERM or Ctrl-C (a CI timeout) goes on to every pytest running, and this script waits for
# them: each then tears its fixtures down (tests/conftest.py), labs and namespaces included.
running=()
stopped=0
stop() {
    stopped=1
    kill -TERM "${running[@]}" 2>/dev/null
}
trap stop TERM INT
# Waits for a pytest started in the background; a trapped signal interrupts `wait`, so wait
# again until it is gone. Its status in `rc`.
await() {
    local pid=$1
    wait "$pid"
    rc=$?
    while kill -0 "$pid" 2>/dev/null; do
        wait "$pid"
        rc=$?
    done
}

"$PYTEST" -q -m kernel --durations=5 tests/agent &
running=("$!")
await "$!"
agent_rc=$rc
[ "$stopped" -eq 0 ] || exit 143

nice -n 19 "$PYTEST" -q -m "not kernel" -p no:cacheprovider --durations=10 tests \
    >"$pure_log" 2>&1 &
pure_pid=$!
"$PYTEST" -q -m kernel --durations=20 --ignore=tests/agent tests &
kernel_pid=$!
running=("$pure_pid" "$kernel_pid")
await "$kernel_pid"
kernel_rc=$rc
await "$pure_pid"
pure_rc=$rc

echo
echo "=== the pure tests (not kernel), run beside the kernel tests ==="
cat "$pure_log"
echo "agent kernel tests: exit $agent_rc; other kernel tests: exit $kernel_rc;" \
     "pure tests: exit $pure_rc"
[ "$agent_rc" -eq 0 ] && [ "$kernel_rc" -eq 0 ] && [ "$pure_rc" -eq 0 ]
