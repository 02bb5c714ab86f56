#!/bin/sh
# Runs the unit and integration test binaries of a build dir and prints one
# closing line "N passed, N failed" (cmocka's per-binary summaries come first).
# Usage: tests/run.sh BUILD_DIR [unit|integration]
# Env: TEST_FILTER=substring runs only matching binaries.
BUILD=${1:-build}
WHICH=${2:-all}
export EDGE_BUILD="$BUILD"
# ASan: leaks are errors; UBSan: any report aborts.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
passed=0; failed=0; broken=""
out=$(mktemp)
run_one() {
    bin=$1
    [ -x "$bin" ] || return 0
    case "$bin" in *"${TEST_FILTER:-}"*) ;; *) return 0 ;; esac
    echo "== $(basename "$bin")"
    "$bin" >"$out" 2>&1
    rc=$?
    cat "$out"
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -1)
    passed=$((passed + ${p:-0}))
    failed=$((failed + ${f:-0}))
    if [ $rc -ne 0 ] && [ -z "$f" ]; then
        # crashed or exited before its summary: count the binary as one failure
        failed=$((failed + 1)); broken="$broken $(basename "$bin")"
    fi
}
if [ "$WHICH" = all ] || [ "$WHICH" = unit ]; then
    for b in "$BUILD"/tests/unit/*_test; do run_one "$b"; done
fi
if [ "$WHICH" = all ] || [ "$WHICH" = integration ]; then
    for b in "$BUILD"/tests/integration/*_test; do run_one "$b"; done
fi
rm -f "$out"
[ -n "$broken" ] && echo "crashed or incomplete:$broken"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
