// SPDX-License-Identifier: GPL-2.0-or-later

//! The parts of the virtio-iommu-rs device that need no QEMU: the
//! virtio-iommu config space and feature bits (virtio spec 5.13.3-5.13.4),
//! the checks of the device's user-visible properties, and the device
//! itself (spec 5.13.6): request decoding, endpoints, domains, mappings,
//! PROBE answers, translation, notifier events and fault reports. The QEMU
//! glue in the parent crate only moves bytes between QEMU and this crate,
//! so all of it is unit-tested with `cargo test`.
//!
//! The glue's entry points are [`Device::handle_request`] (request queue),
//! [`Device::translate`] (IOMMU memory region; or, without the device's
//! lock, [`Device::view`] and [`TranslationView::decide`], with
//! [`Device::queue_fault`] for refusals), [`FaultQueue::deliver`] (event
//! queue), and the [`NotifierEvent`]s they return; for live migration,
//! [`Device::save_state`], [`load_state`] and [`Device::restore`].

#![forbid(unsafe_code)]
// Guest-controlled bytes reach every module: no index, no overflow, no
// unwrap may panic across the FFI boundary (tests may use them freely).
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

pub mod bypass;
pub mod coherency;
pub mod config;
pub mod counters;
pub mod device;
pub mod events;
pub mod fault;
pub mod features;
pub mod mappings;
pub mod migration;
pub mod properties;
pub mod request;
pub mod reserved;
pub mod status;
pub mod translate;
pub mod view;

pub use bypass::{BypassDevice, PciDeviceRef};
pub use coherency::NoncoherentDevices;
pub use counters::Counters;
pub use device::{Device, DeviceConfig, Reply, Response};
pub use events::{aligned_blocks, NotifierEvent, Perm};
pub use fault::{Fault, FaultDelivery, FaultQueue, FaultReason};
pub use mappings::{MapFlags, Mapping, Mappings};
pub use migration::{
    load_extra_endpoints, load_state, MigrationError, SavedDomain, SavedState, StreamReader,
};
pub use request::{decode, DecodeError, Request};
pub use status::Status;
pub use translate::Translated;
pub use view::TranslationView;
