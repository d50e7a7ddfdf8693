# SPDX-License-Identifier: GPL-2.0-or-later
"""Helpers of the virtio-iommu-rs functional tests (tests-functional/x86_64/,
tests-functional/aarch64/): the guest and one boot of it (guest), live
migration between two QEMUs (migration), what a cell asserts (checks), the
tests' base class (testcase, which needs QEMU's tests/functional/qemu_test),
and the guest's network peer (netpeer, run by slirp)."""
