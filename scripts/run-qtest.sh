#!/usr/bin/env bash
# Run qtest binaries in TAP mode and close with one
# "N passed, N failed, N skipped" line.
# Usage: run-qtest.sh QEMU_BINARY QTEST_BINARY... [--qemu QEMU_BINARY QTEST_BINARY...]
# Each QTEST_BINARY runs against the QEMU_BINARY given before it (libqtest
# reads the target from the binary's name).
set -uo pipefail
qemu=$1
shift
log=$(mktemp)
trap 'rm -f "$log"' EXIT
rc=0
while [ $# -gt 0 ]; do
    if [ "$1" = --qemu ]; then
        qemu=$2
        shift 2
        continue
    fi
    QTEST_QEMU_BINARY=$qemu "$1" --tap -k 2>&1 | tee -a "$log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
    shift
done
# A skipped case is TAP's "ok N path # SKIP reason": counted apart.
skipped=$(grep -c '^ok .*# SKIP' "$log")
passed=$(( $(grep -c '^ok ' "$log") - skipped ))
failed=$(grep -c '^not ok ' "$log")
echo "qtest: $passed passed, $failed failed, $skipped skipped"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
