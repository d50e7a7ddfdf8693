// SPDX-License-Identifier: GPL-2.0-or-later

//! A device's cache of IOMMU translations.
//!
//! Direct-mapped: a bus page hashes to one slot, so a lookup is one index
//! and one compare, and a collision simply replaces the older entry (the
//! IOMMU is asked again on the next miss). Entries are at most a page: an
//! IOMMU block of 2 MiB is cached one page at a time, so invalidating a
//! page never has to split an entry; a block smaller than a page (a
//! byte-granular mapping) is cached as it is.
//!
//! Each entry carries the rights the IOMMU granted and a payload of the
//! glue's (a mapping of the target page into host memory). Whatever leaves
//! the cache, replaced or invalidated, is handed back so that the glue can
//! release the payload.

/// The cache's granule.
pub const PAGE_SIZE: u64 = 4096;
pub const PAGE_MASK: u64 = PAGE_SIZE - 1;

pub use qemu_iommu_core::{Access, Perm, TlbEntry};

/// A cached block, at most a page.
#[derive(Debug)]
pub struct Entry<P> {
    /// First bus address of the block.
    pub iova: u64,
    /// The block's size minus one.
    pub mask: u64,
    /// Where `iova` goes.
    pub target: u64,
    pub perm: Perm,
    pub payload: P,
}

impl<P> Entry<P> {
    const fn covers(&self, addr: u64) -> bool {
        addr & !self.mask == self.iova
    }

    const fn overlaps(&self, first: u64, last: u64) -> bool {
        self.iova <= last && first <= self.iova | self.mask
    }
}

/// A hit: where the address goes, how many bytes from there the entry
/// covers, and the entry's payload.
#[derive(Debug)]
pub struct Hit<'a, P> {
    pub target: u64,
    pub room: u64,
    pub payload: &'a mut P,
}

/// The cache. `P` is the glue's per-entry payload.
#[derive(Debug)]
pub struct Iotlb<P> {
    slots: Vec<Option<Entry<P>>>,
    /// log2 of the number of slots.
    bits: u32,
}

impl<P> Iotlb<P> {
    /// A cache of `2^bits` entries (`bits` between 1 and 20).
    pub fn new(bits: u32) -> Self {
        let bits = bits.clamp(1, 20);
        let mut slots = Vec::new();
        slots.resize_with(1 << bits, || None);
        Self { slots, bits }
    }

    fn slot(&self, addr: u64) -> usize {
        // Fibonacci hashing of the page number: neighbouring pages and
        // pages a power of two apart land in different slots.
        let page = addr >> PAGE_SIZE.trailing_zeros();
        (page.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> u64::BITS.saturating_sub(self.bits)) as usize
    }

    /// The entry serving `access` at `addr`, if cached with the rights the
    /// access needs. A cached read-only entry never serves a write.
    #[inline]
    pub fn lookup(&mut self, addr: u64, access: Access) -> Option<Hit<'_, P>> {
        let i = self.slot(addr);
        let e = self.slots.get_mut(i)?.as_mut()?;
        if !e.covers(addr) || !e.perm.allows(access.into()) {
            return None;
        }
        let offset = addr & e.mask;
        Some(Hit {
            target: e.target | offset,
            // Cannot overflow: offset <= mask < PAGE_SIZE.
            room: e.mask.wrapping_sub(offset).wrapping_add(1),
            payload: &mut e.payload,
        })
    }

    /// The part of `t` that serves the page of `addr`, as it would be
    /// cached: its first address, mask and target.
    pub fn block_of(t: &TlbEntry, addr: u64) -> (u64, u64, u64) {
        let mask = t.addr_mask.min(PAGE_MASK);
        let iova = addr & !mask;
        (iova, mask, t.target(iova))
    }

    /// Cache the block of `t` that holds `addr`, with `payload`. Returns
    /// the payload of the entry it replaces, if any.
    ///
    /// Some IOMMUs (QEMU's C virtio-iommu) grant only the right asked for;
    /// a page read, then written, would then flap between two entries.
    /// Rights granted for the same block and target are merged instead:
    /// an IOMMU that takes a right back must send UNMAP first, which
    /// removes the entry.
    pub fn insert(&mut self, t: &TlbEntry, addr: u64, payload: P) -> Option<P> {
        let (iova, mask, target) = Self::block_of(t, addr);
        let i = self.slot(addr);
        let slot = self.slots.get_mut(i)?;
        let mut perm = t.perm;
        if let Some(e) = slot.as_ref() {
            if e.iova == iova && e.mask == mask && e.target == target {
                perm.read |= e.perm.read;
                perm.write |= e.perm.write;
            }
        }
        let old = slot.replace(Entry {
            iova,
            mask,
            target,
            perm,
            payload,
        });
        old.map(|e| e.payload)
    }

    /// Drop every entry overlapping `[first, last]` (an IOMMU UNMAP);
    /// returns their payloads.
    pub fn invalidate(&mut self, first: u64, last: u64) -> Vec<P> {
        let (first, last) = (first.min(last), first.max(last));
        let pages = (last >> 12).saturating_sub(first >> 12);
        let mut gone = Vec::new();
        if pages < self.slots.len() as u64 {
            // Look only where the range's pages would be cached.
            let mut page = first & !PAGE_MASK;
            loop {
                let i = self.slot(page);
                if let Some(slot) = self.slots.get_mut(i) {
                    if slot.as_ref().is_some_and(|e| e.overlaps(first, last)) {
                        gone.extend(slot.take().map(|e| e.payload));
                    }
                }
                match page.checked_add(PAGE_SIZE) {
                    Some(next) if next <= last => page = next,
                    _ => break,
                }
            }
        } else {
            for slot in &mut self.slots {
                if slot.as_ref().is_some_and(|e| e.overlaps(first, last)) {
                    gone.extend(slot.take().map(|e| e.payload));
                }
            }
        }
        gone
    }

    /// Drop everything (the device's address space changed).
    pub fn flush(&mut self) -> Vec<P> {
        self.slots
            .iter_mut()
            .filter_map(|s| s.take().map(|e| e.payload))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
