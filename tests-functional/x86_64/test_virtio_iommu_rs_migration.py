#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Live migration of a Linux guest behind a virtio-iommu on q35 (TCG),
# between virtio-iommu-rs and QEMU's C virtio-iommu-pci in all four
# directions: the project's guest (`make guest-image`, iommu.strict=1)
# writes a pattern to its disk behind the source's IOMMU and keeps reading
# it back with O_DIRECT while it moves over a unix socket to a second QEMU,
# where it verifies the pattern once more behind the destination's IOMMU
# only and finishes its checks. See tests-functional/README.md in the
# virtio-iommu-rs checkout.
#
# Method names: test_<source>_to_<destination>_bypass_<boot-bypass>, c
# being virtio-iommu-pci and rs virtio-iommu-rs (c to c is the reference).

import os
import sys

# The helpers (viommu_rs) live next to this file's real directory.
sys.path.append(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

from viommu_rs.testcase import VirtioIommuRsTest  # noqa: E402


class VirtioIommuRsQ35Migration(VirtioIommuRsTest):

    GUEST_ARCH = "x86_64"

    def test_rs_to_rs_bypass_on(self):
        self.migration_cell("rs", "rs", bypass=True)

    def test_rs_to_rs_bypass_off(self):
        self.migration_cell("rs", "rs", bypass=False)

    def test_c_to_rs_bypass_on(self):
        self.migration_cell("c", "rs", bypass=True)

    def test_c_to_rs_bypass_off(self):
        self.migration_cell("c", "rs", bypass=False)

    def test_rs_to_c_bypass_on(self):
        self.migration_cell("rs", "c", bypass=True)

    def test_rs_to_c_bypass_off(self):
        self.migration_cell("rs", "c", bypass=False)

    def test_c_to_c_bypass_on(self):
        self.migration_cell("c", "c", bypass=True)

    def test_c_to_c_bypass_off(self):
        self.migration_cell("c", "c", bypass=False)


if __name__ == "__main__":
    VirtioIommuRsTest.main()
