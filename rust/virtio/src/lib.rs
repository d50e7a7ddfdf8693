// SPDX-License-Identifier: GPL-2.0-or-later

//! Rust bindings for QEMU's virtio devices and their virtio-pci proxies:
//! subclass `TYPE_VIRTIO_DEVICE` and `TYPE_VIRTIO_PCI` from Rust, and put
//! virtio-mmio transports behind an IOMMU.

pub mod bindings;

mod device;
pub use device::*;

mod iommu_interface;
pub use iommu_interface::*;

mod mmio;
pub use mmio::*;

mod pci;
pub use pci::*;

mod queue;
pub use queue::*;

mod system;
pub use system::*;
