// SPDX-License-Identifier: GPL-2.0-or-later

//! The QOM interface by which QEMU's machines recognise a PCI
//! virtio-iommu (`virtio-iommu-pci-interface`, added by
//! patches/qemu/0004 and 0008): q35 and arm virt declare its MSI region,
//! apply their `aw-bits` default, allow one vIOMMU, handle its plugging
//! and describe it to the guest; through the interface's methods they ask
//! which devices it leaves out of translation and hand it virtio-mmio
//! transports. A Rust virtio-iommu lists the interface in its `TypeInfo`
//! and fills the methods from its `class_init` with
//! [`VirtIOIOMMUPCIInterfaceClass::class_init`].

use std::ffi::CStr;

use pci::PCIDevice;
use qom::{InterfaceType, ObjectType};

use crate::{bindings, VirtIOMMIOProxy};

pub use crate::bindings::VirtIOIOMMUPCIInterfaceClass;

pub const TYPE_VIRTIO_IOMMU_PCI_INTERFACE: &CStr = c"virtio-iommu-pci-interface";

// SAFETY: the name is the interface's TypeInfo name (patch 0004), whose
// class struct is VirtIOIOMMUPCIInterfaceClass.
unsafe impl InterfaceType for VirtIOIOMMUPCIInterfaceClass {
    const TYPE_NAME: &'static CStr = TYPE_VIRTIO_IOMMU_PCI_INTERFACE;
}

/// What a PCI virtio-iommu answers its machine. Called with the BQL held.
pub trait VirtioIommuPciInterface: ObjectType + Sync {
    /// Whether the machine may hand it virtio-mmio transports (the
    /// `*_virtio_mmio*` methods are left NULL otherwise, as QEMU's C
    /// device leaves them).
    const VIRTIO_MMIO: bool;

    /// Whether `dev` is left out of translation for good, so that the
    /// firmware tables leave it out too.
    fn pci_device_bypassed(&self, dev: &PCIDevice) -> bool;

    /// The machine offers `transport` as endpoint `endpoint`.
    fn attach_virtio_mmio(&self, transport: &VirtIOMMIOProxy, endpoint: u32) -> util::Result<()>;

    /// Whether the device plugged into `transport` does DMA through the
    /// IOMMU (its firmware node then names the IOMMU).
    fn virtio_mmio_translated(&self, transport: &VirtIOMMIOProxy) -> bool;

    /// Whether the device plugged into `transport` is described to the
    /// guest as not DMA-coherent.
    fn virtio_mmio_noncoherent(&self, transport: &VirtIOMMIOProxy) -> bool;
}

/// # Safety
///
/// `iommu` is a live `T` (QOM calls the method of the class that
/// implements the interface with its own instance).
unsafe fn this<'a, T>(iommu: *mut qom::bindings::Object) -> &'a T {
    // SAFETY: guaranteed by the caller.
    unsafe { &*iommu.cast::<T>() }
}

unsafe extern "C" fn rust_pci_device_bypassed<T: VirtioIommuPciInterface>(
    iommu: *mut qom::bindings::Object,
    dev: *mut pci::bindings::PCIDevice,
) -> bool {
    // SAFETY: the machine calls this with the IOMMU implementing the
    // interface and a PCI device plugged into a bus.
    unsafe { this::<T>(iommu).pci_device_bypassed(&*dev.cast::<PCIDevice>()) }
}

unsafe extern "C" fn rust_attach_virtio_mmio<T: VirtioIommuPciInterface>(
    iommu: *mut qom::bindings::Object,
    transport: *mut bindings::VirtIOMMIOProxy,
    endpoint: u32,
    errp: *mut *mut util::bindings::Error,
) -> bool {
    // SAFETY: the machine calls this with the IOMMU implementing the
    // interface and one of its transports, which live as long as the
    // machine; errp is its error destination for this plug.
    unsafe {
        let transport = &*transport.cast::<VirtIOMMIOProxy>();
        let result = this::<T>(iommu).attach_virtio_mmio(transport, endpoint);
        util::Error::bool_or_propagate(result, errp)
    }
}

unsafe extern "C" fn rust_virtio_mmio_translated<T: VirtioIommuPciInterface>(
    iommu: *mut qom::bindings::Object,
    transport: *mut bindings::VirtIOMMIOProxy,
) -> bool {
    // SAFETY: as in rust_attach_virtio_mmio.
    unsafe { this::<T>(iommu).virtio_mmio_translated(&*transport.cast::<VirtIOMMIOProxy>()) }
}

unsafe extern "C" fn rust_virtio_mmio_noncoherent<T: VirtioIommuPciInterface>(
    iommu: *mut qom::bindings::Object,
    transport: *mut bindings::VirtIOMMIOProxy,
) -> bool {
    // SAFETY: as in rust_attach_virtio_mmio.
    unsafe { this::<T>(iommu).virtio_mmio_noncoherent(&*transport.cast::<VirtIOMMIOProxy>()) }
}

impl VirtIOIOMMUPCIInterfaceClass {
    /// Fill the interface's methods with `T`'s, from the `class_init` of
    /// the class that lists the interface:
    /// `VirtIOIOMMUPCIInterfaceClass::cast::<T>(klass).class_init::<T>()`.
    pub fn class_init<T: VirtioIommuPciInterface>(&mut self) {
        self.pci_device_bypassed = Some(rust_pci_device_bypassed::<T>);
        if T::VIRTIO_MMIO {
            self.attach_virtio_mmio = Some(rust_attach_virtio_mmio::<T>);
            self.virtio_mmio_translated = Some(rust_virtio_mmio_translated::<T>);
            self.virtio_mmio_noncoherent = Some(rust_virtio_mmio_noncoherent::<T>);
        }
    }
}
