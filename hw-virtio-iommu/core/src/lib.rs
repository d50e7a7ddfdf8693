// SPDX-License-Identifier: GPL-2.0-or-later

//! The parts of the virtio-iommu-rs device that need no QEMU: the
//! virtio-iommu config space and feature bits (virtio spec 5.13.3-5.13.4),
//! and the checks of the device's user-visible properties. The QEMU glue in
//! the parent crate only moves bytes between QEMU and this crate, so all of
//! it is unit-tested with `cargo test`.

pub mod config;
pub mod features;
pub mod properties;
