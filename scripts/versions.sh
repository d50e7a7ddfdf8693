# Pinned versions, sourced by the build scripts.
QEMU_VERSION=10.2.2
QEMU_DEB_VERSION=1:10.2.2+ds-1
QEMU_DEB_TARBALL=qemu_10.2.2+ds.orig.tar.xz
QEMU_DEB_SHA256=be05230fe47a6937cd29f28f562932c8125f9c93c2a82c625198f7a4aa601dfb
QEMU_UPSTREAM_TARBALL=qemu-10.2.2.tar.xz
QEMU_UPSTREAM_URL=https://download.qemu.org/$QEMU_UPSTREAM_TARBALL
# The upstream tarball's hash could not be read on a machine without internet:
# set QEMU_UPSTREAM_SHA256 in the environment to allow that source.
QEMU_UPSTREAM_SHA256=${QEMU_UPSTREAM_SHA256:-}
# meson (>= 1.9 for Rust) and pycotap, installed by QEMU's configure from python/wheels.
MESON_WHEEL_VERSION=1.9.0
PYCOTAP_WHEEL_VERSION=1.3.1
