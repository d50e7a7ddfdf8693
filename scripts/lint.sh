#!/usr/bin/env bash
# rustfmt and clippy over the project's Rust code. Usage: lint.sh QEMU_BUILD_DIR
# The meson-built crates are linted with QEMU's own clippy settings (meson's
# clippy target); findings in QEMU's crates are not ours and are ignored.
set -uo pipefail
cd "$(dirname "$0")/.."
build=$1
status=0

files=$(git ls-files '*.rs')
if ! rustfmt --edition 2021 --check $files; then
    echo "lint: rustfmt would change the files above" >&2
    status=1
fi

cargo clippy --quiet --all-targets -- -D warnings || status=1

log=$(mktemp)
trap 'rm -f "$log"' EXIT
ninja -C "$build" clippy >"$log" 2>&1
ours=$(grep -E -A3 '^(warning|error)' "$log" | grep -E -e '--> .*virtio-iommu-rs/' || true)
if [ -n "$ours" ]; then
    grep -E -B1 -A12 -e '--> .*virtio-iommu-rs/' "$log" >&2
    echo "lint: clippy findings in the project's crates" >&2
    status=1
fi
# The same crates through cargo, as members of QEMU's rust workspace (their
# Cargo manifests, patch 0002): the manifests must keep building.
abs_build=$(realpath "$build")
# make's layout: build/qemu-build is configured from build/qemu-src
src=$(dirname "$abs_build")/qemu-src
if ! (cd "$src/rust" && MESON_BUILD_ROOT=$abs_build CARGO_TARGET_DIR=$abs_build/cargo-target \
        cargo clippy --offline --quiet -p virtio-iommu-rs -p dma-test-device) >"$log" 2>&1 \
        || grep -E -A3 '^(warning|error)' "$log" | grep -q -E -e '--> .*virtio-iommu-rs/'; then
    grep -E -B1 -A12 -e '--> .*virtio-iommu-rs/|^error' "$log" >&2
    echo "lint: cargo clippy (QEMU's rust workspace) fails on the project's crates" >&2
    status=1
fi
[ $status -eq 0 ] && echo "lint: rustfmt and clippy clean"
exit $status
