#!/usr/bin/env bash
# The README's test command: the whole suite on tensorflow and, side by side with it, the tests
# marked `backend` on jax and then on torch. A pytest run keeps about one of two cores busy
# (tracing, saving and Python between the kernels), so the two lines of runs share the machine
# instead of waiting for each other. Each run writes its own log and Keras cache; every log is
# printed whole once all have ended (torch's last), and the exit status is the first failing
# run's (in the order tensorflow, jax, torch).
#
# Usage: bash tools/test_matrix.sh [pytest arguments, e.g. -x or -k pattern]
set -u
cd "$(dirname "$0")/.." || exit 2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run() {  # run BACKEND [pytest arguments]: one pytest run, its log and exit status in $work
    local backend=$1
    shift
    mkdir -p "$work/$backend/keras_home"
    KERAS_BACKEND=$backend KERAS_HOME="$work/$backend/keras_home" \
        python -m pytest -q "$@" > "$work/$backend/log" 2>&1
    echo $? > "$work/$backend/rc"
}

start=$SECONDS
run tensorflow tests "$@" &
(run jax -m backend tests "$@"; run torch -m backend tests "$@") &
wait

status=0
for backend in tensorflow jax torch; do
    rc=$(cat "$work/$backend/rc" 2>/dev/null || echo 2)
    if [ "$status" -eq 0 ] && [ "$rc" -ne 0 ]; then
        status=$rc
    fi
done
echo "=== test matrix: $((SECONDS - start)) s, exit status $status (logs follow, torch's last)"
for backend in tensorflow jax torch; do
    echo "=== KERAS_BACKEND=$backend: python -m pytest -q$([ $backend = tensorflow ] || echo ' -m backend') tests $*"
    cat "$work/$backend/log"
done
exit "$status"
