#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
#
# virtio-iommu-rs and QEMU's C virtio-iommu-pci behind a Linux guest on q35
# (TCG): each test boots the project's guest (scripts/guest/build-image.sh,
# `make guest-image`) behind one IOMMU with a virtio-blk disk and a
# virtio-net NIC, both iommu_platform=on, and checks from inside the guest
# (its /init prints RESULT lines) and from QMP that the IOMMU is in use and
# that disk and network DMA arrive intact. The same assertions for both
# devices; see tests-functional/README.md in the virtio-iommu-rs checkout.
#
# Method names: test_<c|rs>_<guest mode>_bypass_<boot-bypass>, c being
# virtio-iommu-pci and rs virtio-iommu-rs; boot-bypass=off boots qboot (no
# firmware DMA) instead of SeaBIOS.

import os
import sys

# The helpers (viommu_rs) live next to this file's real directory.
sys.path.append(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

from viommu_rs.testcase import VirtioIommuRsTest  # noqa: E402


class VirtioIommuRsQ35(VirtioIommuRsTest):

    GUEST_ARCH = "x86_64"

    def test_c_strict_bypass_on(self):
        self.boot_cell("c", "strict", bypass=True)

    def test_c_strict_bypass_off(self):
        self.boot_cell("c", "strict", bypass=False)

    def test_c_lazy_bypass_on(self):
        self.boot_cell("c", "lazy", bypass=True)

    def test_c_lazy_bypass_off(self):
        self.boot_cell("c", "lazy", bypass=False)

    def test_c_passthrough_bypass_on(self):
        self.boot_cell("c", "passthrough", bypass=True)

    def test_c_passthrough_bypass_off(self):
        self.boot_cell("c", "passthrough", bypass=False)

    def test_rs_strict_bypass_on(self):
        self.boot_cell("rs", "strict", bypass=True)

    def test_rs_strict_bypass_off(self):
        self.boot_cell("rs", "strict", bypass=False)

    def test_rs_lazy_bypass_on(self):
        self.boot_cell("rs", "lazy", bypass=True)

    def test_rs_lazy_bypass_off(self):
        self.boot_cell("rs", "lazy", bypass=False)

    def test_rs_passthrough_bypass_on(self):
        self.boot_cell("rs", "passthrough", bypass=True)

    def test_rs_passthrough_bypass_off(self):
        self.boot_cell("rs", "passthrough", bypass=False)

    def test_rs_strict_bypass_off_disk_bypassed(self):
        # The disk in bypass-devices, with boot-bypass off so that a disk
        # the IOMMU still translated could not work: it must work in no
        # IOMMU group (the VIOT leaves it out), the NIC in a DMA group.
        self.boot_cell("rs", "strict", bypass=False, bypass_disk=True)


if __name__ == "__main__":
    VirtioIommuRsTest.main()
