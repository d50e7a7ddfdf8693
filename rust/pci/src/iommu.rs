// SPDX-License-Identifier: GPL-2.0-or-later

//! Being the IOMMU of a PCI bus (`pci_setup_iommu`): the bus asks the IOMMU
//! for the DMA address space of each device plugged into it.

use std::marker::PhantomData;

use common::Zeroable;

use crate::{bindings, PCIBus};

/// The IOMMU of a PCI bus.
pub trait PciIommu: Sync {
    /// The address space the device at `devfn` on `bus` does DMA through.
    /// QEMU calls this when the device is realized, and keeps the pointer
    /// as long as the device exists: it must stay valid that long.
    fn address_space(&self, bus: &PCIBus, devfn: u8) -> *mut bindings::AddressSpace;
}

unsafe extern "C" fn rust_get_address_space<T: PciIommu>(
    bus: *mut bindings::PCIBus,
    opaque: *mut std::ffi::c_void,
    devfn: std::ffi::c_int,
) -> *mut bindings::AddressSpace {
    // SAFETY: opaque is the &T given to setup_iommu, valid while the bus
    // uses it; bus is the PCIBus the device is plugged into.
    let (iommu, bus) = unsafe { (&*opaque.cast::<T>(), &*bus.cast::<PCIBus>()) };
    let devfn = u8::try_from(devfn).expect("devfn out of range");
    iommu.address_space(bus, devfn)
}

/// The `PCIIOMMUOps` vtable for a `T`, a constant promoted to a static.
struct IommuOps<T>(PhantomData<T>);

impl<T: PciIommu> IommuOps<T> {
    const OPS: bindings::PCIIOMMUOps = bindings::PCIIOMMUOps {
        get_address_space: Some(rust_get_address_space::<T>),
        ..Zeroable::ZERO
    };
}

impl PCIBus {
    /// The bus number the guest (or firmware) gave this bus; 0 for a root
    /// bus until then.
    pub fn bus_num(&self) -> u8 {
        // SAFETY: reads the bus's configuration under the BQL.
        let n = unsafe { bindings::pci_bus_num(self.as_mut_ptr()) };
        u8::try_from(n).expect("PCI bus number out of range")
    }

    /// Make `iommu` the IOMMU of this bus and of the buses below it, which
    /// must be done before any device is plugged into them. `iommu` must
    /// stay valid as long as the bus exists (the IOMMU device is realized
    /// before, and lives as long as, the machine's buses).
    pub fn setup_iommu<T: PciIommu>(&self, iommu: &T) {
        assert!(bql::is_locked());
        // SAFETY: the ops table is static; the opaque pointer stays valid
        // per the contract above.
        unsafe {
            bindings::pci_setup_iommu(
                self.as_mut_ptr(),
                &IommuOps::<T>::OPS,
                std::ptr::from_ref(iommu).cast_mut().cast(),
            );
        }
    }
}
