#!/usr/bin/env bash
# Run qtest binaries in TAP mode and close with one "N passed, N failed"
# line. Usage: run-qtest.sh QEMU_BINARY QTEST_BINARY...
set -uo pipefail
qemu=$1
shift
log=$(mktemp)
trap 'rm -f "$log"' EXIT
rc=0
for test in "$@"; do
    QTEST_QEMU_BINARY=$qemu "$test" --tap -k 2>&1 | tee -a "$log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
done
# A skipped case is TAP's "ok N path # SKIP reason": counted apart.
skipped=$(grep -c '^ok .*# SKIP' "$log")
passed=$(( $(grep -c '^ok ' "$log") - skipped ))
failed=$(grep -c '^not ok ' "$log")
echo "qtest: $passed passed, $failed failed, $skipped skipped"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
