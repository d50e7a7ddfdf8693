#!/usr/bin/env bash
# Unpack the pinned QEMU into SRCDIR and make it buildable with the project:
#  - the meson overlays for QEMU's Rust crate subprojects (scripts/subprojects),
#  - each crate archive, by the version and sha256 its .wrap names,
#  - the meson and pycotap wheels QEMU's configure installs into its pyvenv,
#  - the project's patch series (patches/qemu, applied in order, loudly),
#  - links that put the project's meson.build and qtest inside QEMU's tree.
# Usage: prepare-qemu.sh SRCDIR
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/versions.sh"
src=$1
cache=${VIOMMU_CACHE:-$HOME/.cache/virtio-iommu-rs}
log() { echo "prepare-qemu: $*" >&2; }

tarball=$("$here/scripts/fetch-qemu.sh")
rm -rf "$src" "$src.tmp"
mkdir -p "$src.tmp"
log "unpacking $(basename "$tarball")"
tar -xf "$tarball" -C "$src.tmp" --strip-components=1

# Rust crate overlays, written by this project.
mkdir -p "$src.tmp/subprojects/packagefiles"
cp -r "$here"/scripts/subprojects/* "$src.tmp/subprojects/packagefiles/"

# Crate archives. cargo fetches exactly the versions QEMU's own Cargo.lock
# pins (the same as the wraps); each is then checked against its wrap.
log "fetching the Rust crates named by subprojects/*-rs.wrap"
cargo fetch --locked --manifest-path "$src.tmp/rust/Cargo.toml" >&2
mkdir -p "$src.tmp/subprojects/packagecache"
for wrap in "$src.tmp"/subprojects/*-rs.wrap; do
    dir=$(sed -n 's/^directory *= *//p' "$wrap")
    file=$(sed -n 's/^source_filename *= *//p' "$wrap")
    hash=$(sed -n 's/^source_hash *= *//p' "$wrap")
    crate=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$dir.crate" 2>/dev/null | head -n1)
    [ -n "$crate" ] || { log "cargo did not fetch $dir"; exit 1; }
    got=$(sha256sum "$crate" | cut -d' ' -f1)
    [ "$got" = "$hash" ] || { log "$dir.crate: sha256 $got, the wrap pins $hash"; exit 1; }
    cp "$crate" "$src.tmp/subprojects/packagecache/$file"
    [ -f "$src.tmp/subprojects/packagefiles/$(sed -n 's/^patch_directory *= *//p' "$wrap")/meson.build" ] \
        || { log "no overlay for $(basename "$wrap")"; exit 1; }
done

# Wheels for configure's pyvenv (Debian's tarball drops python/wheels).
wheels="$cache/wheels"
if ! ls "$wheels"/meson-"$MESON_WHEEL_VERSION"-*.whl "$wheels"/pycotap-"$PYCOTAP_WHEEL_VERSION"-*.whl >/dev/null 2>&1; then
    log "downloading meson $MESON_WHEEL_VERSION and pycotap $PYCOTAP_WHEEL_VERSION wheels"
    python3 -m pip download -q --no-deps --only-binary=:all: -d "$wheels" \
        "meson==$MESON_WHEEL_VERSION" "pycotap==$PYCOTAP_WHEEL_VERSION" >&2
fi
mkdir -p "$src.tmp/python/wheels"
cp "$wheels"/meson-"$MESON_WHEEL_VERSION"-*.whl "$wheels"/pycotap-"$PYCOTAP_WHEEL_VERSION"-*.whl \
    "$src.tmp/python/wheels/"

# The patch series. Any patch that does not apply cleanly stops the build.
for p in "$here"/patches/qemu/*.patch; do
    log "applying $(basename "$p")"
    if ! patch -d "$src.tmp" -p1 --forward --batch --quiet <"$p" >&2; then
        log "FAILED to apply $(basename "$p"): the series no longer fits QEMU $QEMU_VERSION"
        exit 1
    fi
done

# The project is built as part of QEMU's tree: rust/hw/virtio-iommu-rs is the
# checkout itself, and the qtest sources are linked where QEMU's qtests live.
ln -s "$here" "$src.tmp/rust/hw/virtio-iommu-rs"
for t in "$here"/tests-qtest/*.[ch]; do
    ln -s "$t" "$src.tmp/tests/qtest/$(basename "$t")"
done
# The functional tests where QEMU's live (tests/functional/<target>/, named
# by patch 10), and their helper package beside qemu_test (meson puts
# tests/functional on their PYTHONPATH).
for arch in x86_64 aarch64; do
    for t in "$here"/tests-functional/$arch/test_*.py; do
        ln -s "$t" "$src.tmp/tests/functional/$arch/$(basename "$t")"
    done
done
ln -s "$here/tests-functional/viommu_rs" "$src.tmp/tests/functional/viommu_rs"

mv "$src.tmp" "$src"
log "QEMU $QEMU_VERSION ready in $src"
