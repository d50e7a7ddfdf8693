// SPDX-License-Identifier: GPL-2.0-or-later

//! What the QEMU glue must tell the rest of QEMU after a request: the IOMMU
//! notifier events of each endpoint's memory region (so that vhost and VFIO
//! shadow the mappings) and the switches between the translated and the
//! bypass address space.
//!
//! The events follow the C device: a MAP notifies every endpoint of the
//! domain; an UNMAP notifies every removed mapping to every endpoint;
//! detaching an endpoint (DETACH, or ATTACH moving it, or reset) unmaps all
//! of its old domain's mappings for it and then switches its address space;
//! attaching switches first and then replays the new domain's mappings.
//! Map events leave out what the C device does not notify: mappings with
//! neither READ nor WRITE, and MMIO mappings. Unmap events are sent for
//! every mapping, as in C.

use crate::mappings::Mapping;

pub use qemu_iommu_core::Perm;

/// One thing the glue passes on. Ranges are inclusive, so the whole 64-bit
/// space is `iova: 0, end: u64::MAX` without overflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotifierEvent {
    /// `IOMMU_NOTIFIER_MAP` on the endpoint's IOMMU memory region.
    Map {
        endpoint: u32,
        iova: u64,
        end: u64,
        phys: u64,
        perm: Perm,
    },
    /// `IOMMU_NOTIFIER_UNMAP` on the endpoint's IOMMU memory region.
    Unmap { endpoint: u32, iova: u64, end: u64 },
    /// The endpoint's DMA now goes untranslated (`bypass`) or through the
    /// IOMMU region: the C device's `virtio_iommu_switch_address_space`.
    SwitchAddressSpace { endpoint: u32, bypass: bool },
}

impl NotifierEvent {
    /// The map event of `m` for `endpoint`, unless the C device would not
    /// notify it (MMIO, or no access right).
    pub fn map(endpoint: u32, m: &Mapping) -> Option<Self> {
        let perm = Perm {
            read: m.flags.read(),
            write: m.flags.write(),
        };
        if m.flags.mmio() || !(perm.read || perm.write) {
            return None;
        }
        Some(Self::Map {
            endpoint,
            iova: m.virt_start,
            end: m.virt_end,
            phys: m.phys_start,
            perm,
        })
    }

    pub fn unmap(endpoint: u32, m: &Mapping) -> Self {
        Self::Unmap {
            endpoint,
            iova: m.virt_start,
            end: m.virt_end,
        }
    }
}

/// Splits `[iova, end]` into the naturally aligned power-of-two blocks
/// `memory_region_notify_iommu` takes (an `IOMMUTLBEntry` is an address and
/// a mask), largest first at each step, as the C device's notifier loop
/// does. Yields `(block_start, addr_mask)`; `[0, u64::MAX]` is one block.
/// A reversed range yields nothing.
pub fn aligned_blocks(iova: u64, end: u64) -> AlignedBlocks {
    AlignedBlocks {
        next: (iova <= end).then_some(iova),
        end,
    }
}

/// Iterator returned by [`aligned_blocks`].
#[derive(Clone, Debug)]
pub struct AlignedBlocks {
    next: Option<u64>,
    end: u64,
}

impl Iterator for AlignedBlocks {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        let start = self.next?;
        // Largest mask the start's alignment allows (any, at 0)...
        let align_mask = match start {
            0 => u64::MAX,
            s => (s & s.wrapping_neg()).wrapping_sub(1),
        };
        // ...and the largest 2^k - 1 not above the remaining length - 1.
        let left = self.end.wrapping_sub(start);
        let size_mask = match left.checked_add(1) {
            None => u64::MAX,
            Some(len) => (1u64 << len.ilog2()).wrapping_sub(1),
        };
        let mask = align_mask.min(size_mask);
        let last = start.wrapping_add(mask);
        self.next = if last >= self.end {
            None
        } else {
            Some(last.wrapping_add(1))
        };
        Some((start, mask))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mappings::MapFlags;
    use proptest::prelude::*;

    fn mapping(flags: MapFlags) -> Mapping {
        Mapping {
            virt_start: 0x1000,
            virt_end: 0x1fff,
            phys_start: 0x8000,
            flags,
        }
    }

    #[test]
    fn map_events_skip_what_c_skips() {
        assert_eq!(NotifierEvent::map(1, &mapping(MapFlags::default())), None);
        assert_eq!(
            NotifierEvent::map(1, &mapping(MapFlags::READ.union(MapFlags::MMIO))),
            None
        );
        assert_eq!(
            NotifierEvent::map(1, &mapping(MapFlags::WRITE)),
            Some(NotifierEvent::Map {
                endpoint: 1,
                iova: 0x1000,
                end: 0x1fff,
                phys: 0x8000,
                perm: Perm {
                    read: false,
                    write: true
                }
            })
        );
        assert_eq!(
            NotifierEvent::unmap(2, &mapping(MapFlags::MMIO)),
            NotifierEvent::Unmap {
                endpoint: 2,
                iova: 0x1000,
                end: 0x1fff
            }
        );
    }

    #[test]
    fn blocks() {
        let b = |s, e| aligned_blocks(s, e).collect::<Vec<_>>();
        assert_eq!(b(0, u64::MAX), [(0, u64::MAX)]);
        assert_eq!(b(0x1000, 0x1fff), [(0x1000, 0xfff)]);
        assert_eq!(b(0x1000, 0x3fff), [(0x1000, 0xfff), (0x2000, 0x1fff)]);
        assert_eq!(b(5, 5), [(5, 0)]);
        assert_eq!(b(3, 8), [(3, 0), (4, 3), (8, 0)]);
        assert_eq!(b(u64::MAX, u64::MAX), [(u64::MAX, 0)]);
        assert_eq!(
            b(1 << 63, u64::MAX),
            [(1 << 63, u64::MAX >> 1)],
            "upper half"
        );
        assert_eq!(b(1, u64::MAX).len(), 64);
        assert_eq!(b(0, u64::MAX - 1).len(), 64);
        assert_eq!(b(2, 1), []);
    }

    proptest! {
        #[test]
        fn blocks_tile_the_range(a: u64, b: u64) {
            let (start, end) = (a.min(b), a.max(b));
            let mut expect = start;
            let mut done = false;
            for (s, mask) in aligned_blocks(start, end) {
                prop_assert!(!done);
                prop_assert_eq!(s, expect);
                prop_assert_eq!(mask & mask.wrapping_add(1), 0, "2^k - 1");
                prop_assert_eq!(s & mask, 0, "aligned");
                let last = s + mask;
                prop_assert!(last <= end);
                if last == end {
                    done = true;
                } else {
                    expect = last + 1;
                }
            }
            prop_assert!(done);
        }
    }
}
