// SPDX-License-Identifier: GPL-2.0-or-later

//! The IOTLB against a model IOMMU: whatever the sequence of mappings,
//! unmaps (each followed by the invalidation a notifier would send) and
//! accesses, a hit always agrees with the IOMMU's current page table.

use std::collections::BTreeMap;

use proptest::prelude::*;
use qemu_dma_core::{Access, Iotlb, Perm, TlbEntry, PAGE_SIZE};

/// A page-granular IOMMU: page number -> (target page, rights).
#[derive(Default)]
struct ModelIommu(BTreeMap<u64, (u64, Perm)>);

impl ModelIommu {
    fn translate(&self, addr: u64) -> Option<TlbEntry> {
        let (target, perm) = *self.0.get(&(addr / PAGE_SIZE))?;
        Some(TlbEntry {
            iova: addr & !(PAGE_SIZE - 1),
            translated_addr: target * PAGE_SIZE,
            addr_mask: PAGE_SIZE - 1,
            perm,
        })
    }
}

/// One DMA through the cache, filling it on a miss as the glue does.
/// Returns where the access went, or None for a fault.
fn access(tlb: &mut Iotlb<u64>, iommu: &ModelIommu, addr: u64, a: Access) -> Option<u64> {
    if let Some(hit) = tlb.lookup(addr, a) {
        // The payload records the target it was made for.
        assert_eq!(*hit.payload, hit.target & !(PAGE_SIZE - 1));
        return Some(hit.target);
    }
    let t = iommu.translate(addr)?;
    if !t.perm.allows(a.into()) {
        return None;
    }
    tlb.insert(&t, addr, t.target(addr) & !(PAGE_SIZE - 1));
    Some(t.target(addr))
}

#[derive(Clone, Debug)]
enum Op {
    Map { page: u64, target: u64, write: bool },
    Unmap { first: u64, pages: u64 },
    Access { page: u64, offset: u64, write: bool },
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    // Few pages, spread out, so that slots collide and ranges overlap.
    let page = prop_oneof![0u64..32, Just(1 << 20), Just((1 << 20) + 512)];
    prop_oneof![
        (page.clone(), 0u64..64, any::<bool>()).prop_map(|(page, target, write)| Op::Map {
            page,
            target,
            write
        }),
        (page.clone(), 1u64..8).prop_map(|(first, pages)| Op::Unmap { first, pages }),
        (page, 0u64..PAGE_SIZE, any::<bool>()).prop_map(|(page, offset, write)| Op::Access {
            page,
            offset,
            write
        }),
        Just(Op::Flush),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn never_stale(ops in proptest::collection::vec(op(), 1..200)) {
        let mut tlb = Iotlb::new(3);
        let mut iommu = ModelIommu::default();
        for op in ops {
            match op {
                Op::Map { page, target, write } => {
                    // The driver must unmap before remapping: as with a
                    // real IOMMU, replacing a live mapping sends UNMAP.
                    tlb.invalidate(page * PAGE_SIZE, page * PAGE_SIZE + PAGE_SIZE - 1);
                    iommu.0.insert(page, (target, Perm { read: true, write }));
                }
                Op::Unmap { first, pages } => {
                    for p in first..first + pages {
                        iommu.0.remove(&p);
                    }
                    tlb.invalidate(first * PAGE_SIZE, (first + pages) * PAGE_SIZE - 1);
                }
                Op::Access { page, offset, write } => {
                    let a = if write { Access::Write } else { Access::Read };
                    let addr = page * PAGE_SIZE + offset;
                    let got = access(&mut tlb, &iommu, addr, a);
                    let want = iommu
                        .translate(addr)
                        .filter(|t| t.perm.allows(a.into()))
                        .map(|t| t.target(addr));
                    prop_assert_eq!(got, want);
                }
                Op::Flush => {
                    tlb.flush();
                }
            }
        }
    }
}

#[test]
fn read_only_entry_never_serves_a_write() {
    let mut tlb = Iotlb::new(4);
    let t = TlbEntry {
        iova: 0x1000,
        translated_addr: 0x8000,
        addr_mask: 0xfff,
        perm: Perm {
            read: true,
            write: false,
        },
    };
    assert_eq!(tlb.insert(&t, 0x1010, 7), None);
    assert_eq!(tlb.lookup(0x1010, Access::Read).unwrap().target, 0x8010);
    assert!(tlb.lookup(0x1010, Access::Write).is_none());
}

#[test]
fn large_blocks_are_cached_a_page_at_a_time() {
    let mut tlb = Iotlb::new(6);
    let t = TlbEntry {
        iova: 0x20_0000,
        translated_addr: 0x4000_0000,
        addr_mask: 0x1f_ffff,
        perm: Perm::RW,
    };
    tlb.insert(&t, 0x20_3456, ());
    let hit = tlb.lookup(0x20_3ff0, Access::Write).unwrap();
    assert_eq!((hit.target, hit.room), (0x4000_3ff0, 0x10));
    assert!(tlb.lookup(0x20_4000, Access::Read).is_none());
    assert_eq!(tlb.invalidate(0x20_3fff, 0x20_3fff).len(), 1);
    assert!(tlb.is_empty());
}

#[test]
fn sub_page_blocks_keep_their_size() {
    let mut tlb = Iotlb::new(6);
    // A 16-byte block whose target differs from the IOVA in the low bits.
    let t = TlbEntry {
        iova: 0x1010,
        translated_addr: 0x9020,
        addr_mask: 0xf,
        perm: Perm::RW,
    };
    tlb.insert(&t, 0x1014, ());
    let hit = tlb.lookup(0x1014, Access::Read).unwrap();
    assert_eq!((hit.target, hit.room), (0x9024, 12));
    assert!(tlb.lookup(0x1020, Access::Read).is_none());
    assert!(tlb.lookup(0x100f, Access::Read).is_none());
}

#[test]
fn invalidating_the_whole_space_scans_every_slot() {
    let mut tlb = Iotlb::new(2);
    for page in [0u64, 1, 2, u64::MAX / PAGE_SIZE] {
        let t = TlbEntry {
            iova: page * PAGE_SIZE,
            translated_addr: 0,
            addr_mask: PAGE_SIZE - 1,
            perm: Perm::RW,
        };
        tlb.insert(&t, page * PAGE_SIZE, page);
    }
    let mut gone = tlb.invalidate(0, u64::MAX);
    gone.sort_unstable();
    assert!(!gone.is_empty());
    assert!(tlb.is_empty());
    // An invalidation at the very top of the space does not wrap.
    assert!(tlb.invalidate(u64::MAX - 1, u64::MAX).is_empty());
}

#[test]
fn rights_granted_one_at_a_time_are_merged() {
    let mut tlb = Iotlb::new(4);
    let only = |read, write| TlbEntry {
        iova: 0x1000,
        translated_addr: 0x8000,
        addr_mask: 0xfff,
        perm: Perm { read, write },
    };
    tlb.insert(&only(true, false), 0x1000, ());
    tlb.insert(&only(false, true), 0x1000, ());
    assert!(tlb.lookup(0x1000, Access::Read).is_some());
    assert!(tlb.lookup(0x1000, Access::Write).is_some());
    // A different target is a different translation: nothing carries over.
    let elsewhere = TlbEntry {
        translated_addr: 0x9000,
        ..only(false, true)
    };
    tlb.insert(&elsewhere, 0x1000, ());
    assert!(tlb.lookup(0x1000, Access::Read).is_none());
}
