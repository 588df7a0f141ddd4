#!/usr/bin/env bash
# run.sh BUILD_DIR [PROGRAM...]: runs every test program in BUILD_DIR/tests
# with GVM_BIN_DIR pointing at BUILD_DIR/bin, then each extra PROGRAM with
# GVM_BIN_DIR at its own tree's bin (make check adds the release build's
# test_sandbox), and ends with one "N passed, N failed" line. Exit status 1 if anything failed. A program
# that runs past TEST_TIMEOUT seconds (default 600) is killed and fails: a
# client waiting on a dead broker waits forever by design.
set -uo pipefail
build=${1:?usage: tests/run.sh BUILD_DIR [PROGRAM...]}
shift
export GVM_BIN_DIR=$build/bin
export GVM_GUEST_DIR=${GVM_GUEST_DIR:-build/guest}
export TMPDIR=${TMPDIR:-/tmp}
passed=0 failed=0 broken=()

for t in "$build"/tests/test_* "$@"; do
	[ -x "$t" ] || continue
	name=$(basename "$t")
	echo "== $name"
	log=$(mktemp)
	GVM_BIN_DIR=$(dirname "$(dirname "$t")")/bin timeout -k 10 "${TEST_TIMEOUT:-600}" "$t" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	[ "$rc" -eq 124 ] && echo "$name: killed after ${TEST_TIMEOUT:-600} s"
	p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
	f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
	passed=$((passed + ${p:-0}))
	failed=$((failed + ${f:-0}))
	# A crash or sanitizer report after the summary still fails the run.
	if [ "$rc" -ne 0 ] && [ "${f:-0}" -eq 0 ]; then
		failed=$((failed + 1))
		broken+=("$name (exit $rc)")
	fi
	rm -f "$log"
done
[ ${#broken[@]} -gt 0 ] && echo "programs that exited badly: ${broken[*]}"
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
