// SPDX-License-Identifier: GPL-2.0-or-later

//! A hostile node count in a migration stream must not size an allocation:
//! this binary's allocator records the largest request made while loading.
//! (Its own test binary, so no other test allocates meanwhile.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use virtio_iommu_core::{load_state, MigrationError};

struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only
// the requested sizes are recorded.
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is the same as System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by System with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: as for `alloc` and `dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Largest = Largest;

#[test]
fn hostile_counts_allocate_nothing_large() {
    let max = u32::MAX.to_be_bytes();
    // u32::MAX domains, one domain with u32::MAX mappings and one mapping,
    // then the end of the stream.
    let mut stream = max.to_vec();
    stream.push(1);
    stream.extend_from_slice(&1u64.to_be_bytes());
    stream.extend_from_slice(&1u32.to_be_bytes());
    stream.extend_from_slice(&max);
    stream.push(1);
    stream.extend_from_slice(&[0; 28]);
    let cases: [&[u8]; 3] = [&stream, &stream[..4], &[0xff, 0xff, 0xff, 0xff, 0, 0]];

    LARGEST.store(0, Ordering::Relaxed);
    for bytes in cases {
        let mut rest = bytes;
        let e = load_state(&mut rest).unwrap_err();
        assert!(matches!(
            e,
            MigrationError::Truncated { .. } | MigrationError::NodeCount { .. }
        ));
    }
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(largest < 4096, "an allocation of {largest} bytes");
}
