// SPDX-License-Identifier: GPL-2.0-or-later

//! How much heap one mapping costs: inserts 10^6 mappings into one domain
//! (ascending, then in a scattered order) and reports the bytes the
//! allocator handed out per mapping; then the same after unmapping three
//! in four of them.
//!
//!     cargo run --release -p virtio-iommu-core --example mapping_memory
//!
//! This is the only `unsafe` of the crate's targets: a global allocator
//! must implement the unsafe `GlobalAlloc` trait. It forwards every call
//! to the system allocator unchanged and only counts bytes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use virtio_iommu_core::{MapFlags, Mapping, Mappings};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards its arguments unchanged to `System`, which
// upholds the `GlobalAlloc` contract; the counter has no effect on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const COUNT: u64 = 1_000_000;

/// The `i`th 4 KiB mapping, with a 4 KiB hole after each.
fn mapping(i: u64) -> Mapping {
    let start = i * 0x2000;
    Mapping {
        virt_start: start,
        virt_end: start + 0xfff,
        phys_start: 0x1_0000_0000 + start,
        flags: MapFlags::READ.union(MapFlags::WRITE),
    }
}

fn report(name: &str, maps: &Mappings, bytes: isize) {
    println!(
        "{name:>10}: {} mappings, {bytes} bytes allocated, {:.1} bytes per mapping",
        maps.len(),
        bytes as f64 / maps.len() as f64
    );
}

/// Map `order`; then, if `keep_one_in` is given, unmap all but one
/// mapping in that many (in a scattered order), and report what is left.
fn measure(name: &str, order: impl Iterator<Item = u64>, keep_one_in: Option<u64>) {
    let before = LIVE.load(Ordering::Relaxed);
    let mut maps = Mappings::new();
    for i in order {
        maps.insert(mapping(i)).expect("disjoint");
    }
    assert_eq!(maps.len() as u64, COUNT);
    if let Some(keep) = keep_one_in {
        for i in (0..COUNT).map(scatter).filter(|i| i % keep != 0) {
            let m = mapping(i);
            maps.remove_range(m.virt_start, m.virt_end).expect("exact");
        }
    }
    report(name, &maps, LIVE.load(Ordering::Relaxed) - before);
}

/// A fixed permutation of 0..COUNT (COUNT and the multiplier are
/// coprime), so nodes split as they do under random inserts.
fn scatter(i: u64) -> u64 {
    (i * 7_919) % COUNT
}

fn main() {
    measure("ascending", 0..COUNT, None);
    measure("scattered", (0..COUNT).map(scatter), None);
    // What removals leave behind: nodes are merged as they empty.
    measure("1/4 left", (0..COUNT).map(scatter), Some(4));
}
