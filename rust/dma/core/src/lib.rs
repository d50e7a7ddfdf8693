// SPDX-License-Identifier: GPL-2.0-or-later

//! The parts of the DMA API that need no QEMU: a small per-device IOTLB
//! ([`Iotlb`]), the split of a transfer into the pieces that one
//! translation can serve ([`Transfer`]), and the bookkeeping of persistent
//! maps that an IOMMU UNMAP must invalidate ([`MapTracker`]). The QEMU glue
//! (the `dma` crate) fills the IOTLB from an IOMMU region's `translate`
//! and empties it from IOMMU notifiers; everything here is tested with
//! `cargo test`.

#![forbid(unsafe_code)]
// Addresses and lengths come from guests: nothing here may panic.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

pub mod iotlb;
pub mod maps;
pub mod transfer;

pub use iotlb::{Access, Iotlb, Perm, TlbEntry, PAGE_MASK, PAGE_SIZE};
pub use maps::MapTracker;
pub use transfer::Transfer;
