// SPDX-License-Identifier: GPL-2.0-or-later

//! How much heap one mapping costs: inserts 10^6 mappings into one domain
//! (ascending, then in a scattered order) and reports the bytes the
//! allocator handed out per mapping.
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

/// 4 KiB mappings with a 4 KiB hole after each, visited in `order`.
fn measure(name: &str, order: impl Iterator<Item = u64>) {
    let before = LIVE.load(Ordering::Relaxed);
    let mut maps = Mappings::new();
    for i in order {
        let start = i * 0x2000;
        maps.insert(Mapping {
            virt_start: start,
            virt_end: start + 0xfff,
            phys_start: 0x1_0000_0000 + start,
            flags: MapFlags::READ.union(MapFlags::WRITE),
        })
        .expect("disjoint");
    }
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    assert_eq!(maps.len() as u64, COUNT);
    println!(
        "{name:>10}: {} mappings, {bytes} bytes allocated, {:.1} bytes per mapping",
        maps.len(),
        bytes as f64 / COUNT as f64
    );
}

fn main() {
    measure("ascending", 0..COUNT);
    // A fixed permutation of 0..COUNT (COUNT and the multiplier are
    // coprime), so nodes split as they do under random inserts.
    measure("scattered", (0..COUNT).map(|i| (i * 7_919) % COUNT));
}
