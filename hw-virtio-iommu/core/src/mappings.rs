// SPDX-License-Identifier: GPL-2.0-or-later

//! The mappings of one domain: disjoint inclusive IOVA intervals, each
//! translated linearly to guest-physical addresses (spec 5.13.6.5).
//!
//! They live in an ordered tree keyed by the first IOVA. Because intervals
//! never overlap, the interval holding an address (or the only one that
//! can overlap a range) is the last one starting at or before it, so map,
//! lookup and the checks of unmap are each one O(log n) search; unmap then
//! removes the k covered mappings in O(k log n).
//!
//! The tree is persistent (module `tree`): `Clone` is O(1) and shares every
//! node, and a later write copies only the path it changes. The device
//! needs that to hand out an immutable snapshot of each domain's mappings
//! after every request ([`crate::view::TranslationView`]), so that DMA
//! translation reads a snapshot without taking the device's lock while
//! MAP and UNMAP go on, and a snapshot costs nothing in proportion to the
//! number of mappings (a guest may have millions).

mod tree;

use std::fmt;

use crate::request::{MAP_F_MASK, MAP_F_MMIO, MAP_F_READ, MAP_F_WRITE};
use tree::Tree;

/// Valid `VIRTIO_IOMMU_MAP_F_*` flags of a mapping (no unknown bit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MapFlags(u8);

impl MapFlags {
    pub const READ: Self = Self(MAP_F_READ as u8);
    pub const WRITE: Self = Self(MAP_F_WRITE as u8);
    pub const MMIO: Self = Self(MAP_F_MMIO as u8);

    /// The flags of a MAP request, or `None` if it has a bit this device
    /// does not know.
    pub const fn from_bits(bits: u32) -> Option<Self> {
        if bits & !MAP_F_MASK != 0 {
            return None;
        }
        // The mask fits in a byte.
        Some(Self(bits as u8))
    }

    pub const fn bits(self) -> u32 {
        self.0 as u32
    }

    pub const fn read(self) -> bool {
        self.0 & Self::READ.0 != 0
    }

    pub const fn write(self) -> bool {
        self.0 & Self::WRITE.0 != 0
    }

    pub const fn mmio(self) -> bool {
        self.0 & Self::MMIO.0 != 0
    }

    #[must_use]
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

/// One mapping: `[virt_start, virt_end]` (inclusive) to `phys_start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mapping {
    pub virt_start: u64,
    pub virt_end: u64,
    pub phys_start: u64,
    pub flags: MapFlags,
}

impl Mapping {
    pub const fn contains(&self, iova: u64) -> bool {
        self.virt_start <= iova && iova <= self.virt_end
    }

    /// The guest-physical address `iova` translates to (spec: `PA = VA -
    /// virt_start + phys_start`). Wraps at 2^64 like the C device, which
    /// does not check that the physical range fits.
    pub const fn phys(&self, iova: u64) -> u64 {
        iova.wrapping_sub(self.virt_start)
            .wrapping_add(self.phys_start)
    }

    /// The largest naturally aligned power-of-two block holding `iova` that
    /// this mapping translates linearly: what an `IOMMUTLBEntry` (an
    /// address and a mask) may say without claiming more than the mapping
    /// covers. Returns `(iova_base, phys_base, addr_mask)`; the block is
    /// `[iova_base, iova_base + addr_mask]`. `iova` must be in the mapping.
    pub fn tlb_block(&self, iova: u64) -> (u64, u64, u64) {
        // Both sides of the block must share their low bits: a mapping whose
        // IOVA and address differ in bit n cannot be described by blocks
        // larger than 2^n.
        let misaligned = self.virt_start ^ self.phys_start;
        let mut mask = 0u64;
        while mask != u64::MAX {
            let next = (mask << 1) | 1;
            let base = iova & !next;
            if next & misaligned != 0 || base < self.virt_start || base | next > self.virt_end {
                break;
            }
            mask = next;
        }
        let base = iova & !mask;
        (base, self.phys(base), mask)
    }
}

/// What is stored per mapping besides its key (the first IOVA). Packed, as
/// tree leaves hold an array of these: 17 bytes instead of 24 makes a leaf
/// about a fifth smaller (see `examples/mapping_memory.rs`). Its fields are
/// only ever copied out, never borrowed, which packing requires.
#[derive(Clone, Copy, Default)]
// The tree's self-check compares free slots with the default.
#[cfg_attr(test, derive(PartialEq))]
#[repr(C, packed)]
struct Entry {
    end: u64,
    phys: u64,
    flags: u8,
}

impl Entry {
    /// By value: comparing `self.end` in place would borrow a packed field.
    fn end(self) -> u64 {
        self.end
    }

    fn mapping(self, start: u64) -> Mapping {
        Mapping {
            virt_start: start,
            virt_end: self.end,
            phys_start: self.phys,
            flags: MapFlags(self.flags),
        }
    }
}

/// Why a mapping was not inserted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertError {
    /// `virt_start > virt_end`.
    Reversed,
    /// Some address of the range is already mapped.
    Overlap,
}

/// UNMAP would have to cut this mapping in two; nothing was removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WouldSplit(pub Mapping);

/// The mappings of one domain. `Clone` is O(1): the clone shares the
/// tree, and whichever side writes later copies what it changes.
#[derive(Clone, Default)]
pub struct Mappings {
    by_start: Tree<Entry>,
}

impl fmt::Debug for Mappings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Mappings {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.by_start.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The mapping holding `iova`, if any.
    pub fn lookup(&self, iova: u64) -> Option<Mapping> {
        let (start, entry) = self.by_start.last_at_or_before(iova)?;
        let m = entry.mapping(start);
        m.contains(iova).then_some(m)
    }

    /// Whether any address of `[start, end]` is mapped.
    pub fn overlaps(&self, start: u64, end: u64) -> bool {
        // The last mapping starting at or before `end` ends after every
        // other such mapping, so only it can reach `start`.
        self.by_start
            .last_at_or_before(end)
            .is_some_and(|(_, e)| e.end() >= start)
    }

    /// Add a mapping whose range is free.
    pub fn insert(&mut self, m: Mapping) -> Result<(), InsertError> {
        if m.virt_start > m.virt_end {
            return Err(InsertError::Reversed);
        }
        if self.overlaps(m.virt_start, m.virt_end) {
            return Err(InsertError::Overlap);
        }
        let entry = Entry {
            end: m.virt_end,
            phys: m.phys_start,
            // MapFlags only holds mask bits, which fit in a byte.
            flags: m.flags.0,
        };
        // Refused only if the start is taken, which overlaps() ruled out.
        if self.by_start.insert(m.virt_start, entry) {
            Ok(())
        } else {
            Err(InsertError::Overlap)
        }
    }

    /// Remove every mapping inside `[start, end]` and return them in IOVA
    /// order, or remove nothing if a mapping straddles either end of the
    /// range (UNMAP must not split a mapping, spec 5.13.6.6). An empty or
    /// reversed range removes nothing.
    pub fn remove_range(&mut self, start: u64, end: u64) -> Result<Vec<Mapping>, WouldSplit> {
        let mut removed = Vec::new();
        self.remove_range_with(start, end, |m| removed.push(m))?;
        Ok(removed)
    }

    /// [`Mappings::remove_range`], handing each removed mapping to
    /// `removed` in IOVA order instead of collecting them: the common
    /// UNMAP (one mapping, exactly the range) allocates nothing.
    pub fn remove_range_with(
        &mut self,
        start: u64,
        end: u64,
        mut removed: impl FnMut(Mapping),
    ) -> Result<(), WouldSplit> {
        if start > end {
            return Ok(());
        }
        let at_start = self.by_start.last_at_or_before(start);
        // The common case (a driver unmapping what it mapped): one mapping
        // is exactly the range. Mappings do not overlap, so nothing else
        // can lie inside or straddle either end: one lookup does.
        if let Some((s, e)) = at_start {
            if s == start && e.end() == end {
                self.by_start.remove(start);
                removed(e.mapping(s));
                return Ok(());
            }
        }
        // A mapping straddling `start` begins before it...
        let before = match at_start {
            Some((s, _)) if s == start => start
                .checked_sub(1)
                .and_then(|b| self.by_start.last_at_or_before(b)),
            other => other,
        };
        if let Some((s, e)) = before {
            if e.end() >= start {
                return Err(WouldSplit(e.mapping(s)));
            }
        }
        // ...and one straddling `end` is the last one starting inside.
        if let Some((s, e)) = self.by_start.last_at_or_before(end) {
            if s >= start && e.end() > end {
                return Err(WouldSplit(e.mapping(s)));
            }
        }
        let covered: Vec<Mapping> = self
            .by_start
            .iter_from(start)
            .take_while(|&(s, _)| s <= end)
            .map(|(s, e)| e.mapping(s))
            .collect();
        for m in covered {
            self.by_start.remove(m.virt_start);
            removed(m);
        }
        Ok(())
    }

    /// All mappings in IOVA order.
    pub fn iter(&self) -> impl Iterator<Item = Mapping> + '_ {
        self.by_start.iter_from(0).map(|(s, e)| e.mapping(s))
    }

    pub fn clear(&mut self) {
        self.by_start = Tree::default();
    }
}

#[cfg(test)]
mod tlb_block_tests {
    use super::*;

    fn mapping(virt_start: u64, virt_end: u64, phys_start: u64) -> Mapping {
        Mapping {
            virt_start,
            virt_end,
            phys_start,
            flags: MapFlags::READ,
        }
    }

    #[test]
    fn page_mapping_is_one_page_block() {
        let m = mapping(0x10_0000, 0x10_0fff, 0x7000);
        assert_eq!(m.tlb_block(0x10_0123), (0x10_0000, 0x7000, 0xfff));
    }

    #[test]
    fn large_aligned_mapping_gives_large_blocks() {
        let m = mapping(0x20_0000, 0x3f_ffff, 0x4020_0000);
        assert_eq!(m.tlb_block(0x21_2345), (0x20_0000, 0x4020_0000, 0x1f_ffff));
    }

    #[test]
    fn block_never_leaves_the_mapping() {
        // [0x1000, 0x4fff]: 0x3000 lies in the aligned block [0x2000,0x3fff].
        let m = mapping(0x1000, 0x4fff, 0x1000);
        assert_eq!(m.tlb_block(0x3000), (0x2000, 0x2000, 0x1fff));
        assert_eq!(m.tlb_block(0x4800), (0x4000, 0x4000, 0xfff));
        assert_eq!(m.tlb_block(0x1000), (0x1000, 0x1000, 0xfff));
    }

    #[test]
    fn misaligned_mapping_gives_byte_blocks() {
        let m = mapping(0x1000, 0x1fff, 0x2001);
        assert_eq!(m.tlb_block(0x1800), (0x1800, 0x2801, 0));
        let m = mapping(0x1000, 0x1fff, 0x2010);
        assert_eq!(m.tlb_block(0x1805), (0x1800, 0x2810, 0xf));
    }

    #[test]
    fn whole_space() {
        let m = mapping(0, u64::MAX, 0);
        assert_eq!(m.tlb_block(0x1234), (0, 0, u64::MAX));
        let m = mapping(1, u64::MAX, 1);
        assert_eq!(m.tlb_block(u64::MAX), (1 << 63, 1 << 63, (1 << 63) - 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(virt_start: u64, virt_end: u64, phys_start: u64) -> Mapping {
        Mapping {
            virt_start,
            virt_end,
            phys_start,
            flags: MapFlags::READ,
        }
    }

    fn with(ms: &[Mapping]) -> Mappings {
        let mut maps = Mappings::new();
        for &x in ms {
            maps.insert(x).unwrap();
        }
        maps
    }

    #[test]
    fn flags() {
        assert_eq!(MapFlags::from_bits(0), Some(MapFlags::default()));
        assert_eq!(MapFlags::from_bits(7).map(MapFlags::bits), Some(7));
        assert_eq!(MapFlags::from_bits(8), None);
        assert_eq!(MapFlags::from_bits(0x8000_0001), None);
        let rw = MapFlags::READ.union(MapFlags::WRITE);
        assert!(rw.read() && rw.write() && !rw.mmio());
        assert!(MapFlags::MMIO.mmio());
    }

    #[test]
    fn lookup_finds_the_interval_and_translates() {
        let maps = with(&[m(0x1000, 0x1fff, 0xa000), m(0x3000, 0x3000, 0x5)]);
        assert_eq!(maps.lookup(0xfff), None, "just before: no off-by-one");
        assert_eq!(maps.lookup(0x1000), Some(m(0x1000, 0x1fff, 0xa000)));
        assert_eq!(maps.lookup(0x1fff).unwrap().phys(0x1fff), 0xafff);
        assert_eq!(maps.lookup(0x2000), None);
        assert_eq!(maps.lookup(0x3000).unwrap().phys(0x3000), 0x5);
        assert_eq!(maps.lookup(0x3001), None);
        assert_eq!(maps.lookup(u64::MAX), None);
    }

    #[test]
    fn overlapping_inserts_are_refused() {
        let mut maps = with(&[m(0x1000, 0x1fff, 0)]);
        for (s, e) in [
            (0x1000, 0x1fff),
            (0x0, 0x1000),
            (0x1fff, 0x2fff),
            (0x1800, 0x1800),
            (0, u64::MAX),
        ] {
            assert_eq!(maps.insert(m(s, e, 0)), Err(InsertError::Overlap));
        }
        assert_eq!(maps.insert(m(0x0, 0xfff, 0)), Ok(()));
        assert_eq!(maps.insert(m(0x2000, 0x2000, 0)), Ok(()));
        assert_eq!(maps.insert(m(2, 1, 0)), Err(InsertError::Reversed));
        assert_eq!(maps.len(), 3);
    }

    #[test]
    fn top_of_the_address_space() {
        let mut maps = with(&[m(u64::MAX - 0xfff, u64::MAX, 0x1000)]);
        assert_eq!(maps.lookup(u64::MAX).unwrap().phys(u64::MAX), 0x1fff);
        assert!(maps.overlaps(u64::MAX, u64::MAX));
        assert_eq!(
            maps.insert(m(u64::MAX, u64::MAX, 0)),
            Err(InsertError::Overlap)
        );
        assert_eq!(maps.remove_range(0, u64::MAX).unwrap().len(), 1);

        // The whole space as one mapping; phys wraps.
        let maps = with(&[m(0, u64::MAX, 0x10)]);
        assert_eq!(maps.lookup(u64::MAX).unwrap().phys(u64::MAX), 0xf);
    }

    #[test]
    fn unmap_examples_of_the_spec() {
        // Spec 5.13.6.6, examples (1)-(7).
        let mut maps = Mappings::new();
        assert_eq!(maps.remove_range(0, 4), Ok(vec![]));

        let mut maps = with(&[m(0, 9, 0)]);
        assert_eq!(maps.remove_range(0, 9), Ok(vec![m(0, 9, 0)]));
        assert!(maps.is_empty());

        let mut maps = with(&[m(0, 4, 0), m(5, 9, 0)]);
        assert_eq!(maps.remove_range(0, 9), Ok(vec![m(0, 4, 0), m(5, 9, 0)]));

        let mut maps = with(&[m(0, 9, 0)]);
        assert_eq!(maps.remove_range(0, 4), Err(WouldSplit(m(0, 9, 0))));
        assert_eq!(maps.len(), 1);

        let mut maps = with(&[m(0, 4, 0), m(5, 9, 0)]);
        assert_eq!(maps.remove_range(0, 4), Ok(vec![m(0, 4, 0)]));
        assert_eq!(maps.iter().collect::<Vec<_>>(), [m(5, 9, 0)]);

        let mut maps = with(&[m(0, 4, 0)]);
        assert_eq!(maps.remove_range(0, 9), Ok(vec![m(0, 4, 0)]));

        let mut maps = with(&[m(0, 4, 0), m(10, 14, 0)]);
        assert_eq!(maps.remove_range(0, 14).unwrap().len(), 2);
    }

    #[test]
    fn unmap_is_atomic() {
        // Covered mappings before the straddling one stay too.
        let mut maps = with(&[m(0, 4, 0), m(5, 9, 0), m(10, 19, 0)]);
        assert_eq!(maps.remove_range(0, 14), Err(WouldSplit(m(10, 19, 0))));
        assert_eq!(maps.len(), 3);
        assert_eq!(maps.remove_range(7, 30), Err(WouldSplit(m(5, 9, 0))));
        assert_eq!(maps.len(), 3);
        assert_eq!(maps.remove_range(12, 12), Err(WouldSplit(m(10, 19, 0))));
        assert_eq!(maps.remove_range(20, u64::MAX), Ok(vec![]));
        assert_eq!(maps.remove_range(5, 3), Ok(vec![]), "reversed: nothing");
        assert_eq!(maps.len(), 3);
    }
}

/// `Mappings` against a `BTreeMap` model with the same semantics, over
/// random operation sequences, with snapshots (clones) taken at random
/// points that must stay as they were whatever happens later.
#[cfg(test)]
mod model_tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// start -> (end, phys, flags)
    type Model = BTreeMap<u64, (u64, u64, MapFlags)>;

    fn mapping((&s, &(e, p, f)): (&u64, &(u64, u64, MapFlags))) -> Mapping {
        Mapping {
            virt_start: s,
            virt_end: e,
            phys_start: p,
            flags: f,
        }
    }

    fn model_overlaps(model: &Model, start: u64, end: u64) -> bool {
        model.iter().any(|(&s, &(e, _, _))| s <= end && start <= e)
    }

    fn model_insert(model: &mut Model, m: Mapping) -> Result<(), InsertError> {
        if m.virt_start > m.virt_end {
            return Err(InsertError::Reversed);
        }
        if model_overlaps(model, m.virt_start, m.virt_end) {
            return Err(InsertError::Overlap);
        }
        model.insert(m.virt_start, (m.virt_end, m.phys_start, m.flags));
        Ok(())
    }

    fn model_remove(model: &mut Model, start: u64, end: u64) -> Result<Vec<Mapping>, WouldSplit> {
        if start > end {
            return Ok(vec![]);
        }
        // The straddler at `start` is reported before the one at `end`.
        let at_start = model
            .iter()
            .find(|(&s, &(e, _, _))| s < start && start <= e);
        let at_end = model
            .iter()
            .find(|(&s, &(e, _, _))| start <= s && s <= end && end < e);
        if let Some(m) = at_start.or(at_end) {
            return Err(WouldSplit(mapping(m)));
        }
        let inside: Vec<Mapping> = model.range(start..=end).map(mapping).collect();
        for m in &inside {
            model.remove(&m.virt_start);
        }
        Ok(inside)
    }

    fn model_lookup(model: &Model, iova: u64) -> Option<Mapping> {
        model.iter().map(mapping).find(|m| m.contains(iova))
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(Mapping),
        /// `count` mappings of `len` bytes every `stride` bytes from
        /// `start` (grows the tree by hundreds at once: with the unit
        /// tests' tiny nodes, several levels).
        Bulk {
            start: u64,
            count: u64,
            stride: u64,
            len: u64,
        },
        Remove(u64, u64),
        /// Unmap exactly the mapping at this index (modulo the count),
        /// the common UNMAP.
        RemoveExact(usize),
        Clear,
        Snapshot,
    }

    /// Addresses that collide often, plus the top of the space.
    fn addr() -> impl Strategy<Value = u64> {
        prop_oneof![
            8 => 0u64..0x4_0000,
            1 => (u64::MAX - 0x100)..=u64::MAX,
            1 => any::<u64>(),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        let flags = (0u32..8).prop_map(|b| MapFlags::from_bits(b).unwrap());
        prop_oneof![
            10 => (addr(), 0u64..0x300, any::<u64>(), flags).prop_map(|(s, len, p, f)| {
                Op::Insert(Mapping {
                    virt_start: s,
                    virt_end: s.saturating_add(len),
                    phys_start: p,
                    flags: f,
                })
            }),
            1 => (addr(), any::<u64>()).prop_map(|(a, b)| Op::Insert(Mapping {
                virt_start: a.max(b),
                virt_end: a.min(b),
                phys_start: 0,
                flags: MapFlags::READ,
            })),
            2 => (0u64..0x4_0000, 1u64..600, 1u64..0x40, 0u64..0x40).prop_map(
                |(start, count, stride, len)| Op::Bulk { start, count, stride, len }
            ),
            6 => (addr(), addr()).prop_map(|(a, b)| Op::Remove(a.min(b), a.max(b))),
            2 => (addr(), 0u64..0x2000).prop_map(|(a, len)| Op::Remove(a, a.saturating_add(len))),
            1 => (addr(), addr()).prop_map(|(a, b)| Op::Remove(a.max(b), a.min(b))),
            8 => any::<usize>().prop_map(Op::RemoveExact),
            1 => Just(Op::Clear),
            3 => Just(Op::Snapshot),
        ]
    }

    fn same(maps: &Mappings, model: &Model) -> Result<(), TestCaseError> {
        maps.by_start.check();
        prop_assert_eq!(maps.len(), model.len());
        prop_assert_eq!(maps.is_empty(), model.is_empty());
        prop_assert!(maps.iter().eq(model.iter().map(mapping)), "iter differs");
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

        #[test]
        fn mappings_match_a_btreemap(
            ops in prop::collection::vec(op(), 1..60),
            probes in prop::collection::vec(addr(), 24),
        ) {
            let mut maps = Mappings::new();
            let mut model = Model::new();
            let mut snapshots: Vec<(Mappings, Model)> = Vec::new();
            for op in &ops {
                match *op {
                    Op::Insert(m) => {
                        prop_assert_eq!(maps.insert(m), model_insert(&mut model, m), "{:?}", m);
                    }
                    Op::Bulk { start, count, stride, len } => {
                        for i in 0..count {
                            let s = start + i * stride;
                            let m = Mapping {
                                virt_start: s,
                                virt_end: s + len,
                                phys_start: s ^ 0x5555,
                                flags: MapFlags::READ,
                            };
                            prop_assert_eq!(maps.insert(m), model_insert(&mut model, m));
                        }
                    }
                    Op::Remove(s, e) => {
                        prop_assert_eq!(maps.remove_range(s, e), model_remove(&mut model, s, e));
                    }
                    Op::RemoveExact(i) => {
                        if !model.is_empty() {
                            let m = mapping(model.iter().nth(i % model.len()).unwrap());
                            prop_assert_eq!(
                                maps.remove_range(m.virt_start, m.virt_end),
                                Ok(vec![m])
                            );
                            model.remove(&m.virt_start);
                        }
                    }
                    Op::Clear => {
                        maps.clear();
                        model.clear();
                    }
                    Op::Snapshot => snapshots.push((maps.clone(), model.clone())),
                }
                same(&maps, &model)?;
                // The edges of a few mappings spread over the whole set.
                let every = (model.len() / 16).max(1);
                let edges = model
                    .iter()
                    .step_by(every)
                    .flat_map(|(&s, &(e, _, _))| [s.wrapping_sub(1), s, e, e.wrapping_add(1)]);
                for iova in probes.iter().copied().chain(edges) {
                    prop_assert_eq!(maps.lookup(iova), model_lookup(&model, iova), "{:#x}", iova);
                }
                for w in probes.windows(2) {
                    let (s, e) = (w[0], w[1]);
                    prop_assert_eq!(maps.overlaps(s, e), model_overlaps(&model, s, e));
                }
                // The latest snapshot is still what it was...
                if let Some((snap, frozen)) = snapshots.last() {
                    same(snap, frozen)?;
                }
            }
            // ...and so is every one.
            for (snap, frozen) in &snapshots {
                same(snap, frozen)?;
            }
        }
    }
}
