#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
#
# virtio-iommu-rs and QEMU's C virtio-iommu-pci behind a Linux guest on
# arm virt (-cpu max, TCG): the project's arm64 guest (`make
# guest-image-arm64`) booted from the device tree (-kernel, no firmware; the
# PCIe node's iommu-map routes the endpoints, checked against the tree QEMU
# dumps for the same command line) or through UEFI (ACPI, VIOT), with a
# virtio-blk disk on PCI or on a virtio-mmio transport and a virtio-net NIC.
# The same assertions as on q35 for both devices; see
# tests-functional/README.md in the virtio-iommu-rs checkout.
#
# Method names: test_<c|rs>_<guest mode>_bypass_<boot-bypass>[_...], c
# being virtio-iommu-pci and rs virtio-iommu-rs; mmio_disk: the disk on
# virtio-mmio, noncoherent: in the IOMMU's noncoherent-devices,
# disk_bypassed: in its bypass-devices.

import os
import sys

# The helpers (viommu_rs) live next to this file's real directory.
sys.path.append(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

from viommu_rs.testcase import VirtioIommuRsTest  # noqa: E402


class VirtioIommuRsVirt(VirtioIommuRsTest):
    """Device-tree boots. No firmware does DMA, so boot-bypass=off costs
    nothing here."""

    GUEST_ARCH = "arm64"

    def test_c_strict_bypass_on(self):
        self.boot_cell("c", "strict", bypass=True)

    def test_c_lazy_bypass_on(self):
        self.boot_cell("c", "lazy", bypass=True)

    def test_c_passthrough_bypass_on(self):
        self.boot_cell("c", "passthrough", bypass=True)

    def test_rs_strict_bypass_on(self):
        self.boot_cell("rs", "strict", bypass=True)

    def test_rs_lazy_bypass_on(self):
        self.boot_cell("rs", "lazy", bypass=True)

    def test_rs_passthrough_bypass_on(self):
        self.boot_cell("rs", "passthrough", bypass=True)

    def test_c_strict_bypass_off(self):
        self.boot_cell("c", "strict", bypass=False)

    def test_rs_strict_bypass_off(self):
        self.boot_cell("rs", "strict", bypass=False)

    def test_rs_strict_bypass_off_disk_bypassed(self):
        # The disk in no group and working, its requester id left out of
        # the iommu-map; the NIC in a DMA group.
        self.boot_cell("rs", "strict", bypass=False, bypass_disk=True)

    def test_c_strict_bypass_on_mmio_disk(self):
        # The C device manages PCI only: the disk is in no group, its node
        # has no iommus.
        self.boot_cell("c", "strict", bypass=True, disk="mmio")

    def test_rs_strict_bypass_on_mmio_disk(self):
        # In a DMA group, its node with iommus and dma-coherent, no bounce.
        self.boot_cell("rs", "strict", bypass=True, disk="mmio")

    def test_rs_strict_bypass_on_mmio_disk_noncoherent(self):
        # Its node says dma-noncoherent and the guest bounces through
        # swiotlb (io_tlb_used_hiwater > 0).
        self.boot_cell("rs", "strict", bypass=True, disk="mmio-nc")

    def test_rs_strict_bypass_off_mmio_disk_bypassed(self):
        self.boot_cell("rs", "strict", bypass=False, bypass_disk=True, disk="mmio")


class VirtioIommuRsVirtUefi(VirtioIommuRsTest):
    """Boots through UEFI (Debian's qemu-efi-aarch64) and ACPI: the VIOT
    describes the endpoints."""

    GUEST_ARCH = "arm64"

    def test_c_strict_bypass_on_uefi(self):
        self.boot_cell("c", "strict", bypass=True, firmware="uefi")

    def test_rs_strict_bypass_on_uefi(self):
        self.boot_cell("rs", "strict", bypass=True, firmware="uefi")

    def test_rs_strict_bypass_on_uefi_mmio_disk_noncoherent(self):
        # The disk in a DMA group through the VIOT's MMIO endpoint node,
        # and swiotlb bounces (its _CCA is 0).
        self.boot_cell("rs", "strict", bypass=True, firmware="uefi", disk="mmio-nc")


if __name__ == "__main__":
    VirtioIommuRsTest.main()
