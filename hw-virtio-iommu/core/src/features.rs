// SPDX-License-Identifier: GPL-2.0-or-later

//! Feature bits of the virtio-iommu device (virtio spec 5.13.3).

/// `VIRTIO_ID_IOMMU`, the virtio device id.
pub const VIRTIO_ID_IOMMU: u16 = 23;

/// The driver may use the input (IOVA) range in the config space.
pub const INPUT_RANGE: u32 = 0;
/// The driver may use the domain id range in the config space.
pub const DOMAIN_RANGE: u32 = 1;
/// MAP and UNMAP requests are available.
pub const MAP_UNMAP: u32 = 2;
/// Legacy global bypass bit (superseded by `BYPASS_CONFIG`; not offered).
pub const BYPASS: u32 = 3;
/// PROBE requests are available.
pub const PROBE: u32 = 4;
/// The `VIRTIO_IOMMU_MAP_F_MMIO` flag is available.
pub const MMIO: u32 = 5;
/// The `bypass` config field is available and writable.
pub const BYPASS_CONFIG: u32 = 6;

/// `VIRTIO_RING_F_INDIRECT_DESC`.
pub const RING_INDIRECT_DESC: u32 = 28;
/// `VIRTIO_RING_F_EVENT_IDX`.
pub const RING_EVENT_IDX: u32 = 29;
/// `VIRTIO_F_VERSION_1`.
pub const VERSION_1: u32 = 32;

/// The feature bits the device adds to those of its transport: the same set
/// QEMU's C virtio-iommu offers. `BYPASS` stays off, as there: the
/// driver-writable `bypass` config field replaces it.
pub const DEVICE_FEATURES: u64 = bit(RING_EVENT_IDX)
    | bit(RING_INDIRECT_DESC)
    | bit(VERSION_1)
    | bit(INPUT_RANGE)
    | bit(DOMAIN_RANGE)
    | bit(MAP_UNMAP)
    | bit(MMIO)
    | bit(PROBE)
    | bit(BYPASS_CONFIG);

/// The mask of feature bit `n`.
pub const fn bit(n: u32) -> u64 {
    1 << n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_the_c_device_set() {
        // Bits 0-2, 4-6 (device), 28-29 (ring) and 32 (VERSION_1).
        assert_eq!(DEVICE_FEATURES, 0x1_3000_0077);
        assert_eq!(DEVICE_FEATURES & bit(BYPASS), 0);
    }
}
