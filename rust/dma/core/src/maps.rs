// SPDX-License-Identifier: GPL-2.0-or-later

//! Persistent maps: bus address ranges a device keeps mapped across an
//! asynchronous operation, which an IOMMU UNMAP (or a change of the
//! device's address space) must invalidate.

/// The live persistent maps of one device, by id.
#[derive(Debug, Default)]
pub struct MapTracker {
    next_id: u64,
    /// `(id, first, last)`, inclusive bus-address ranges. A device has a
    /// handful at a time, so a list beats a tree.
    live: Vec<(u64, u64, u64)>,
}

impl MapTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Track `[first, last]`; returns its id.
    pub fn add(&mut self, first: u64, last: u64) -> u64 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.live.push((id, first.min(last), first.max(last)));
        id
    }

    /// Stop tracking `id` (released by its owner); false if it was not
    /// live (already invalidated).
    pub fn remove(&mut self, id: u64) -> bool {
        let before = self.live.len();
        self.live.retain(|&(i, _, _)| i != id);
        self.live.len() != before
    }

    pub fn is_live(&self, id: u64) -> bool {
        self.live.iter().any(|&(i, _, _)| i == id)
    }

    /// Invalidate every map that overlaps `[first, last]`: they are no
    /// longer tracked, and their ids are returned for the callbacks.
    pub fn take_overlapping(&mut self, first: u64, last: u64) -> Vec<u64> {
        let mut hit = Vec::new();
        self.live.retain(|&(id, f, l)| {
            let overlaps = f <= last && first <= l;
            if overlaps {
                hit.push(id);
            }
            !overlaps
        });
        hit
    }

    /// Invalidate every map.
    pub fn take_all(&mut self) -> Vec<u64> {
        self.live.drain(..).map(|(id, _, _)| id).collect()
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_invalidates_once() {
        let mut t = MapTracker::new();
        let a = t.add(0x1000, 0x1fff);
        let b = t.add(0x3000, 0x3fff);
        assert_eq!(t.take_overlapping(0x1fff, 0x2fff), vec![a]);
        assert!(!t.is_live(a));
        assert!(t.is_live(b));
        assert!(t.take_overlapping(0x1000, 0x1fff).is_empty());
        assert!(!t.remove(a));
        assert!(t.remove(b));
        assert!(t.is_empty());
    }

    #[test]
    fn edges_and_whole_space() {
        let mut t = MapTracker::new();
        let a = t.add(0x1000, 0x1fff);
        assert!(t.take_overlapping(0x2000, u64::MAX).is_empty());
        assert!(t.take_overlapping(0, 0xfff).is_empty());
        assert_eq!(t.take_overlapping(0, u64::MAX), vec![a]);
        let b = t.add(5, 5);
        assert_eq!(t.take_all(), vec![b]);
    }
}
