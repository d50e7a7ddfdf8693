#!/usr/bin/env bash
# Run a qtest binary in TAP mode and close with one "N passed, N failed"
# line. Usage: run-qtest.sh QEMU_BINARY QTEST_BINARY [qtest args...]
set -uo pipefail
qemu=$1 test=$2
shift 2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
QTEST_QEMU_BINARY=$qemu "$test" --tap -k "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
passed=$(grep -c '^ok ' "$log")
failed=$(grep -c '^not ok ' "$log")
echo "qtest: $passed passed, $failed failed"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
