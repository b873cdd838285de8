#!/usr/bin/env bash
# The README's test command: the whole suite on tensorflow, and the tests marked `backend` on
# jax and on torch, in two lines of runs side by side. A pytest run keeps about one of two
# cores busy (tracing, saving and Python between the kernels), so the lines share the machine
# instead of waiting for each other. Line 1: tensorflow, every file but SECOND_LINE. Line 2:
# jax, then torch, then tensorflow on SECOND_LINE (files chosen so that both lines take about
# as long; the files of the session-wide `builtin_run` fixture stay in line 1, so the main
# job trains once). Each run writes its own log and Keras cache; every log is printed whole
# once all have ended, with each run's 25 slowest tests (where CI's time goes), and the exit
# status is the first failing run's (in the order below; a run that collected no test, say
# under -k, counts as passed unless every run did).
#
# A backend that is not installed (after `pip install -e ".[test]"` alone) is skipped with a
# one-line notice naming the extra to install; under CI=true it is an error instead. While
# the runs go, a line every PROGRESS_S seconds (default 120) says how far each has come.
#
# Usage: bash tools/test_matrix.sh [pytest arguments, e.g. -x or -k pattern]
set -u
cd "$(dirname "$0")/.." || exit 2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

missing=()
for backend in tensorflow jax torch; do
    python -c "import $backend" 2>/dev/null || missing+=("$backend")
done
for backend in "${missing[@]}"; do
    extra=$([ "$backend" = tensorflow ] && echo test || echo "test,$backend")
    if [ "${CI:-}" = true ] || [ "$backend" = tensorflow ]; then
        echo "test_matrix: $backend is not installed: pip install -e \".[$extra]\" (or run bash .ci/run, which installs every extra)" >&2
        exit 2
    fi
    echo "test_matrix: $backend is not installed, so its line is skipped: pip install -e \".[test,jax,torch]\" runs it (bash .ci/run installs every extra)" >&2
done
installed() { [[ " ${missing[*]} " != *" $1 "* ]]; }

# Measured (2026-12-06, e955771): line 1 2143 s against line 2's 1143 s (jax 361, torch 222,
# tensorflow 560) with the seven files before test_bad_image_files; the five after it (about
# 500 s of line 1's) moved here to even the lines. Measured again (2026-12-07, 203c487, a
# clean clone): line 1 2052 s against line 2's 1262 s (jax 342, torch 179, tensorflow 741);
# the five files from test_compress_distill on moved here (about 400 s of line 1's).
# Measured again (2026-12-07, 5d5299b, --durations=0): line 1 1488 s, line 2 1497 s (jax 413,
# torch 169, tensorflow 915); the next commits took about 150 s from line 1's files and 20 s
# from line 2's, so test_sensitivity (40 s, on the session's tiny run, which line 1 trains
# anyway) moved to line 1. Measured again (2026-12-07, 7fbb0e7, a clean clone): line 1 1232 s,
# line 2 1333 s (jax 345, torch 173, tensorflow 815); test_lora.py (about 70 s on tensorflow,
# its kill -9 test 50 s of it) moved to line 1.
# test_embeddings and test_gradcam stay in line 1: their shapes classifier
# (tests/shapes_classifier.py) is the main job's best.keras, which only line 1 trains.
SECOND_LINE=(tests/test_backends.py tests/test_benchmarks_smoke.py tests/test_contract.py
             tests/test_docstrings.py tests/test_layers.py tests/test_lrn_builtins.py
             tests/test_models.py tests/test_bad_image_files.py tests/test_batch_norm.py
             tests/test_cli.py tests/test_cli_fast.py tests/test_distribute.py
             tests/test_compress_distill.py tests/test_distill_command.py)
RUNS=(tensorflow jax torch tensorflow-2)  # the order of the logs and of the exit status

run() {  # run NAME BACKEND [pytest arguments]: one pytest run, its log and exit status in $work
    local name=$1 backend=$2
    shift 2
    mkdir -p "$work/$name/keras_home"
    KERAS_BACKEND=$backend KERAS_HOME="$work/$name/keras_home" \
        python -m pytest -q --durations=25 "$@" > "$work/$name/log" 2>&1
    echo $? > "$work/$name/rc"
}

progress() {  # "tensorflow 41%, jax done (exit 0), ...": how far each run has come
    local name line="" done_share
    for name in "${RUNS[@]}"; do
        if [ -f "$work/$name/rc" ]; then
            line+="$name done (exit $(cat "$work/$name/rc")), "
        elif [ -f "$work/$name/log" ]; then
            done_share=$(grep -o '\[ *[0-9]*%\]' "$work/$name/log" | tail -1 | tr -d '[] ')
            line+="$name ${done_share:-started}, "
        fi
    done
    echo "=== test matrix, $((SECONDS - start)) s: ${line%, }"
}

start=$SECONDS
run tensorflow tensorflow tests "${SECOND_LINE[@]/#/--ignore=}" "$@" &
first=$!
(installed jax && run jax jax -m backend tests "$@"
 installed torch && run torch torch -m backend tests "$@"
 run tensorflow-2 tensorflow "${SECOND_LINE[@]}" "$@") &
second=$!
while kill -0 "$first" 2>/dev/null || kill -0 "$second" 2>/dev/null; do
    for _ in $(seq "${PROGRESS_S:-120}"); do
        sleep 1
        kill -0 "$first" 2>/dev/null || kill -0 "$second" 2>/dev/null || break
    done
    kill -0 "$first" 2>/dev/null || kill -0 "$second" 2>/dev/null && progress
done
wait

status=0
collected=0
for name in "${RUNS[@]}"; do
    installed "${name%-2}" || continue
    rc=$(cat "$work/$name/rc" 2>/dev/null || echo 2)
    [ "$rc" -ne 5 ] && collected=1
    if [ "$status" -eq 0 ] && [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then
        status=$rc
    fi
done
[ "$collected" -eq 0 ] && status=5
echo "=== test matrix: $((SECONDS - start)) s, exit status $status (logs follow)"
for name in "${RUNS[@]}"; do
    case $name in
        tensorflow) what="python -m pytest -q tests (but ${SECOND_LINE[*]})" ;;
        tensorflow-2) what="python -m pytest -q ${SECOND_LINE[*]}" ;;
        *) what="python -m pytest -q -m backend tests" ;;
    esac
    installed "${name%-2}" || { echo "=== KERAS_BACKEND=${name%-2}: skipped, not installed"; continue; }
    echo "=== KERAS_BACKEND=${name%-2}: $what $*"
    cat "$work/$name/log"
done
# The summary again at the very end, where a CI log cut to its tail still shows it: each
# run's result line and its failed tests, and the free disk (a full /tmp fails tests at random).
echo "=== test matrix summary: $((SECONDS - start)) s, exit status $status"
for name in "${RUNS[@]}"; do
    installed "${name%-2}" || continue
    echo "$name (exit $(cat "$work/$name/rc" 2>/dev/null || echo none)): $(grep -E '^=*.* in [0-9.]+s' "$work/$name/log" | tail -1 | tr -d '=')"
    grep -E '^(FAILED|ERROR) ' "$work/$name/log" | cut -c1-300
done
# The work every run did, children included (a builtin in this shell: its waited-for
# descendants). A run's wall time swings with what runs beside it; this does not as much.
times > "$work/times"
seconds() { local m=${1%%m*} s=${1#*m}; s=${s%s}; echo $((10#$m * 60 + 10#${s%.*})); }
read -r user system < <(tail -1 "$work/times")
user=$(seconds "$user") system=$(seconds "$system")
echo "CPU time of every run and its children: $((user + system)) s (user $user s, system" \
     "$system s) in $((SECONDS - start)) s"
df -h "${TMPDIR:-/tmp}" | tail -1 | awk '{print "free disk under '"${TMPDIR:-/tmp}"': " $4 " of " $2}'
exit "$status"
