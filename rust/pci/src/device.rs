// SPDX-License-Identifier: GPL-2.0-or-later

//! Safe wrappers for `PCIDevice`, its class and `PCIBus`.

use std::{ffi::CStr, mem::size_of, ptr::addr_of};

use common::{Opaque, Zeroable};
use hwcore::{DeviceImpl, DeviceState};
use migration::bindings::{VMStateField, VMStateFlags};
use qom::{prelude::*, ObjectClass};
use util::{Error, Result};

use crate::bindings;
pub use crate::bindings::PCIDeviceClass;

/// A safe wrapper around [`bindings::PCIDevice`].
#[repr(transparent)]
#[derive(Debug, common::Wrapper)]
pub struct PCIDevice(Opaque<bindings::PCIDevice>);

// SAFETY: PCI devices are only accessed with the BQL held.
unsafe impl Send for PCIDevice {}
unsafe impl Sync for PCIDevice {}

// SAFETY: TYPE_PCI_DEVICE's instance and class structs are the bindgen ones.
unsafe impl ObjectType for PCIDevice {
    type Class = PCIDeviceClass;
    const TYPE_NAME: &'static CStr =
        // SAFETY: bindgen emits the C string constant with its terminating NUL.
        unsafe { CStr::from_bytes_with_nul_unchecked(bindings::TYPE_PCI_DEVICE) };
}

qom_isa!(PCIDevice: DeviceState, Object);

/// A safe wrapper around [`bindings::PCIBus`].
#[repr(transparent)]
#[derive(Debug, common::Wrapper)]
pub struct PCIBus(Opaque<bindings::PCIBus>);

// SAFETY: buses are only accessed with the BQL held.
unsafe impl Send for PCIBus {}
unsafe impl Sync for PCIBus {}

// SAFETY: TYPE_PCI_BUS's instance struct is the bindgen one; Rust code does
// not use its class.
unsafe impl ObjectType for PCIBus {
    type Class = ObjectClass;
    const TYPE_NAME: &'static CStr =
        // SAFETY: bindgen emits the C string constant with its terminating NUL.
        unsafe { CStr::from_bytes_with_nul_unchecked(bindings::TYPE_PCI_BUS) };
}

qom_isa!(PCIBus: Object);

impl PCIBus {
    /// Whether this is a root bus (of a host bridge), as opposed to the
    /// secondary bus of a PCI bridge.
    pub fn is_root(&self) -> bool {
        // pci_bus_is_root() is static inline, so bindgen does not emit it.
        // SAFETY: self is a valid PCIBus; flags is a plain field (BQL).
        let flags = unsafe { (*self.as_ptr()).flags };
        flags & bindings::PCI_BUS_IS_ROOT != 0
    }

    /// The device registered at `devfn` on this bus. A device being
    /// hot-plugged is registered only at the end of its realize, after it
    /// got its DMA address space.
    pub fn device(&self, devfn: u8) -> Option<&PCIDevice> {
        assert!(bql::is_locked());
        // SAFETY: devices[] has 256 entries, one per devfn, each NULL or a
        // device plugged into this bus, which lives as long as its entry.
        unsafe {
            let dev = (*self.as_ptr()).devices[usize::from(devfn)];
            dev.cast::<PCIDevice>().as_ref()
        }
    }
}

/// An interface in a `TypeInfo`'s list.
pub const fn interface(name: &'static CStr) -> qom::bindings::InterfaceInfo {
    qom::bindings::InterfaceInfo {
        type_: name.as_ptr(),
    }
}

/// The end of a `TypeInfo`'s interface list.
pub const END_OF_INTERFACES: qom::bindings::InterfaceInfo = qom::bindings::InterfaceInfo {
    type_: std::ptr::null(),
};

/// PCI Express endpoint or conventional PCI device: PCI's
/// `class_base_init` insists that a concrete PCI type is one of them.
pub const PCIE_DEVICE: qom::bindings::InterfaceInfo = qom::bindings::InterfaceInfo {
    type_: bindings::INTERFACE_PCIE_DEVICE.as_ptr().cast(),
};
pub const CONVENTIONAL_PCI_DEVICE: qom::bindings::InterfaceInfo = qom::bindings::InterfaceInfo {
    type_: bindings::INTERFACE_CONVENTIONAL_PCI_DEVICE.as_ptr().cast(),
};

/// Class-level identity and methods of a PCI device: what
/// `PCIDeviceClass` holds for every instance. `None` keeps the value
/// inherited from the parent class.
pub trait PCIDeviceImpl: DeviceImpl + IsA<PCIDevice> {
    const VENDOR_ID: Option<u16> = None;
    const DEVICE_ID: Option<u16> = None;
    const REVISION: Option<u8> = None;
    const CLASS_ID: Option<u16> = None;

    /// `PCIDeviceClass::realize`, run by the PCI core once the function
    /// has its configuration space (not qdev's realize, which PCI owns).
    const PCI_REALIZE: Option<fn(&Self) -> Result<()>> = None;

    /// `PCIDeviceClass::exit`, run when the device is unrealized.
    const PCI_EXIT: Option<fn(&Self)> = None;
}

unsafe extern "C" fn rust_pci_realize<T: PCIDeviceImpl>(
    dev: *mut bindings::PCIDevice,
    errp: *mut *mut util::bindings::Error,
) {
    // SAFETY: the PCI core calls realize with an instance of T.
    let state = unsafe { &*dev.cast::<T>() };
    let result = T::PCI_REALIZE.map_or(Ok(()), |f| f(state));
    // SAFETY: errp comes from the PCI core.
    unsafe {
        Error::ok_or_propagate(result, errp);
    }
}

unsafe extern "C" fn rust_pci_exit<T: PCIDeviceImpl>(dev: *mut bindings::PCIDevice) {
    // SAFETY: the PCI core calls exit with an instance of T.
    let state = unsafe { &*dev.cast::<T>() };
    if let Some(f) = T::PCI_EXIT {
        f(state);
    }
}

impl PCIDeviceClass {
    /// Fill in `PCIDeviceClass` from the [`PCIDeviceImpl`] constants, then
    /// the parent classes.
    pub fn class_init<T: PCIDeviceImpl>(&mut self) {
        if let Some(v) = T::VENDOR_ID {
            self.vendor_id = v;
        }
        if let Some(v) = T::DEVICE_ID {
            self.device_id = v;
        }
        if let Some(v) = T::REVISION {
            self.revision = v;
        }
        if let Some(v) = T::CLASS_ID {
            self.class_id = v;
        }
        if T::PCI_REALIZE.is_some() {
            self.realize = Some(rust_pci_realize::<T>);
        }
        if T::PCI_EXIT.is_some() {
            self.exit = Some(rust_pci_exit::<T>);
        }
        self.parent_class.class_init::<T>();
    }
}

/// Methods of [`PCIDevice`] and its subclasses.
pub trait PCIDeviceMethods: ObjectDeref
where
    Self::Target: IsA<PCIDevice>,
{
    /// The bus the device is plugged into. Only valid once the device has
    /// been plugged, i.e. from realize on.
    fn bus(&self) -> &PCIBus {
        assert!(bql::is_locked());
        let dev: &PCIDevice = self.upcast();
        // SAFETY: a plugged PCI device's parent bus is a PCIBus, which lives
        // at least as long as the device.
        unsafe {
            let bus = hwcore::bindings::qdev_get_parent_bus(dev.as_mut_ptr().cast());
            assert!(!bus.is_null());
            &*bus.cast::<PCIBus>()
        }
    }

    /// The device's slot and function on its bus.
    fn devfn(&self) -> u8 {
        let dev: &PCIDevice = self.upcast();
        // SAFETY: a plain field, set when the device was registered on its
        // bus (0..=255 then) and fixed afterwards.
        let devfn = unsafe { (*dev.as_ptr()).devfn };
        u8::try_from(devfn).unwrap_or(0)
    }

    /// The device's qdev `id=`, if the user gave one.
    fn qdev_id(&self) -> Option<String> {
        let dev: &PCIDevice = self.upcast();
        // SAFETY: qdev's id is NULL or a NUL-terminated string owned by
        // the device, set before realize and kept until it is finalized.
        unsafe {
            let id = (*dev.as_ptr()).qdev.id;
            (!id.is_null()).then(|| std::ffi::CStr::from_ptr(id).to_string_lossy().into_owned())
        }
    }

    /// Whether the machine handles the plugging of this device (its
    /// pre-plug and plug hooks run), as machines do for the devices they
    /// wire specially.
    fn has_machine_hotplug_handler(&self) -> bool {
        assert!(bql::is_locked());
        let dev: &PCIDevice = self.upcast();
        // SAFETY: the device is valid; the function only looks it up.
        !unsafe { hwcore::bindings::qdev_get_machine_hotplug_handler(dev.as_mut_ptr().cast()) }
            .is_null()
    }

    /// The device's bus-master address space, where its DMA goes
    /// (`pci_get_address_space`). Initialized by the PCI core once the
    /// machine is ready (at realize for hot-plugged devices): until then
    /// its root is NULL.
    fn bus_master_as(&self) -> *mut system::bindings::AddressSpace {
        let dev: &PCIDevice = self.upcast();
        // SAFETY: the address of a field of the live device; nothing is
        // read.
        unsafe { std::ptr::addr_of_mut!((*dev.as_mut_ptr()).bus_master_as).cast() }
    }

    /// Expose `mr` as 32-bit memory BAR `bar`.
    fn register_memory_bar(&self, bar: u8, mr: &system::MemoryRegion) {
        assert!(bql::is_locked());
        let dev: &PCIDevice = self.upcast();
        // SAFETY: the device and region are valid, and the region lives as
        // long as the device (a field of it).
        unsafe {
            bindings::pci_register_bar(
                dev.as_mut_ptr(),
                bar.into(),
                bindings::PCI_BASE_ADDRESS_SPACE_MEMORY as u8,
                mr.as_mut_ptr().cast(),
            );
        }
    }
}

impl<R: ObjectDeref> PCIDeviceMethods for R where R::Target: IsA<PCIDevice> {}

/// The field of a PCI device's `VMSTATE` that holds the PCI core's state
/// (config space, interrupt state) of a device whose struct starts with
/// its `PCIDevice`: C's `VMSTATE_PCI_DEVICE(parent_obj, ...)`.
pub const VMSTATE_PCI_DEVICE: VMStateField = VMStateField {
    name: c"parent_obj".as_ptr(),
    vmsd: addr_of!(bindings::vmstate_pci_device),
    size: size_of::<bindings::PCIDevice>(),
    flags: VMStateFlags::VMS_STRUCT,
    ..Zeroable::ZERO
};
