// SPDX-License-Identifier: GPL-2.0-or-later

//! # virtio-iommu-rs
//!
//! A virtio-iommu device (virtio spec 5.13) for QEMU, written in Rust:
//! `-device virtio-iommu-rs` is a modern-only virtio-pci proxy
//! ([`pci::VirtioIommuPci`]) around the virtio backend
//! ([`device::VirtioIommu`]). Everything that needs no QEMU lives in the
//! `virtio_iommu_core` crate.

pub mod device;
pub mod pci;

/// QOM type name of the PCI device users create.
pub const TYPE_VIRTIO_IOMMU_RS: &std::ffi::CStr = c"virtio-iommu-rs";
/// QOM type name of the virtio backend inside it.
pub const TYPE_VIRTIO_IOMMU_RS_DEVICE: &std::ffi::CStr = c"virtio-iommu-rs-device";
/// QOM type name of the IOMMU memory region of each endpoint.
pub const TYPE_VIRTIO_IOMMU_RS_MEMORY_REGION: &std::ffi::CStr = c"virtio-iommu-rs-memory-region";
