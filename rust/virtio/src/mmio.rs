// SPDX-License-Identifier: GPL-2.0-or-later

//! virtio-mmio transports behind an IOMMU: the transport asks its IOMMU for
//! the DMA address space of the device plugged into it
//! (`virtio_mmio_setup_iommu`, added by patches/qemu/0007), as a PCI bus
//! asks the IOMMU set up with `pci_setup_iommu`.

use std::{ffi::CStr, marker::PhantomData, ptr::NonNull};

use common::Opaque;
use system::bindings::address_space_memory;

use crate::bindings::{self, AddressSpace};

/// A safe wrapper around [`bindings::VirtIOMMIOProxy`], a virtio-mmio
/// transport (`TYPE_VIRTIO_MMIO`).
#[repr(transparent)]
#[derive(Debug, common::Wrapper)]
pub struct VirtIOMMIOProxy(Opaque<bindings::VirtIOMMIOProxy>);

// SAFETY: transports are only accessed with the BQL held.
unsafe impl Send for VirtIOMMIOProxy {}
unsafe impl Sync for VirtIOMMIOProxy {}

/// The IOMMU of a virtio-mmio transport.
pub trait VirtioMmioIommu: Sync {
    /// The address space the device being plugged into `transport` does
    /// DMA through, `None` for system memory. QEMU keeps the pointer as
    /// long as the device exists: it must stay valid that long.
    fn address_space(&self, transport: &VirtIOMMIOProxy) -> Option<NonNull<AddressSpace>>;
}

unsafe extern "C" fn rust_get_address_space<T: VirtioMmioIommu>(
    proxy: *mut bindings::VirtIOMMIOProxy,
    opaque: *mut std::ffi::c_void,
) -> *mut AddressSpace {
    // SAFETY: opaque is the &T given to setup_iommu, valid while the
    // transport uses it; proxy is the transport asking.
    let (iommu, proxy) = unsafe { (&*opaque.cast::<T>(), &*proxy.cast::<VirtIOMMIOProxy>()) };
    iommu
        .address_space(proxy)
        .map_or_else(|| (&raw mut address_space_memory).cast(), NonNull::as_ptr)
}

/// The `VirtIOMMIOIOMMUOps` vtable for a `T`, a constant promoted to a
/// static.
struct IommuOps<T>(PhantomData<T>);

impl<T: VirtioMmioIommu> IommuOps<T> {
    const OPS: bindings::VirtIOMMIOIOMMUOps = bindings::VirtIOMMIOIOMMUOps {
        get_address_space: Some(rust_get_address_space::<T>),
    };
}

impl VirtIOMMIOProxy {
    /// Make `iommu` translate the DMA of the devices plugged into this
    /// transport from now on. `iommu` must stay valid as long as the
    /// transport exists (an IOMMU device lives as long as the machine).
    pub fn setup_iommu<T: VirtioMmioIommu>(&self, iommu: &T) {
        assert!(bql::is_locked());
        // SAFETY: the ops table is static; the opaque pointer stays valid
        // per the contract above.
        unsafe {
            bindings::virtio_mmio_setup_iommu(
                self.as_mut_ptr(),
                &IommuOps::<T>::OPS,
                std::ptr::from_ref(iommu).cast_mut().cast(),
            );
        }
    }

    /// The guest-physical address of the transport's registers.
    pub fn base(&self) -> u64 {
        // SAFETY: a sysbus device's first MMIO region address is a plain
        // field, set when the machine mapped the transport.
        unsafe { (*self.as_ptr()).parent_obj.mmio[0].addr }
    }

    /// The device plugged into the transport, if any.
    fn device(&self) -> Option<&bindings::VirtIODevice> {
        assert!(bql::is_locked());
        // SAFETY: the transport's virtio bus holds at most one child (what
        // the inline virtio_bus_get_device reads), a VirtIODevice plugged
        // until it is unrealized.
        unsafe {
            let kid = (*self.as_ptr()).bus.parent_obj.children.tqh_first;
            kid.as_ref()?
                .child
                .cast::<bindings::VirtIODevice>()
                .as_ref()
        }
    }

    /// The qdev `id=` of the device plugged into the transport, if there
    /// is one and the user named it.
    pub fn device_id(&self) -> Option<String> {
        let id = self.device()?.parent_obj.id;
        // SAFETY: qdev's id is NULL or a NUL-terminated string owned by the
        // device until it is finalized.
        (!id.is_null()).then(|| unsafe { CStr::from_ptr(id) }.to_string_lossy().into_owned())
    }

    /// If a device is plugged into the transport: whether it was told to do
    /// its DMA through the platform's IOMMU (`iommu_platform=on`,
    /// `VIRTIO_F_IOMMU_PLATFORM`).
    pub fn device_wants_iommu(&self) -> Option<bool> {
        // SAFETY: host_features is a plain u64 in a union with its atomic
        // twin; it is written at realize, before the device is plugged.
        let features = unsafe { self.device()?.__bindgen_anon_1.host_features };
        Some(features & (1 << bindings::VIRTIO_F_IOMMU_PLATFORM) != 0)
    }
}
