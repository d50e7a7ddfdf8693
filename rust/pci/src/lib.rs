// SPDX-License-Identifier: GPL-2.0-or-later

//! Rust bindings for QEMU's PCI devices and buses, as far as
//! virtio-iommu-rs needs them.

pub mod bindings;

mod device;
pub use device::*;

mod iommu;
pub use iommu::*;
