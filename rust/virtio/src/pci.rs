// SPDX-License-Identifier: GPL-2.0-or-later

//! Subclassing `TYPE_VIRTIO_PCI` from Rust: a virtio-pci proxy embeds its
//! virtio backend device and plugs it into the proxy's virtio bus.

use std::{
    ffi::{c_void, CStr},
    mem::{size_of, MaybeUninit},
};

use common::Opaque;
use hwcore::DeviceState;
pub use pci::{interface, CONVENTIONAL_PCI_DEVICE, END_OF_INTERFACES, PCIE_DEVICE};
use pci::{PCIDevice, PCIDeviceImpl};
use qom::prelude::*;
use util::{Error, Result};

pub use crate::bindings::VirtioPCIClass;
use crate::{bindings, VirtIODevice};

/// A safe wrapper around [`bindings::VirtIOPCIProxy`].
#[repr(transparent)]
#[derive(Debug, common::Wrapper)]
pub struct VirtIOPCIProxy(Opaque<bindings::VirtIOPCIProxy>);

// SAFETY: proxies are only accessed with the BQL held.
unsafe impl Send for VirtIOPCIProxy {}
unsafe impl Sync for VirtIOPCIProxy {}

// SAFETY: TYPE_VIRTIO_PCI's instance and class structs are the bindgen ones.
unsafe impl ObjectType for VirtIOPCIProxy {
    type Class = VirtioPCIClass;
    const TYPE_NAME: &'static CStr =
        // SAFETY: bindgen emits the C string constant with its terminating NUL.
        unsafe { CStr::from_bytes_with_nul_unchecked(bindings::TYPE_VIRTIO_PCI) };
}

qom_isa!(VirtIOPCIProxy: PCIDevice, DeviceState, Object);

/// Virtual methods of a virtio-pci proxy (`VirtioPCIClass`).
pub trait VirtioPciProxyImpl: PCIDeviceImpl + IsA<VirtIOPCIProxy> {
    /// Realize the proxy: check properties and realize the backend with
    /// [`VirtIOPCIProxyMethods::realize_backend`]. Runs inside virtio-pci's
    /// own realize, after the PCI device itself exists.
    const VIRTIO_PCI_REALIZE: fn(&Self) -> Result<()>;

    /// The QOM interfaces of the type, ending with [`END_OF_INTERFACES`].
    const INTERFACES: &'static [qom::bindings::InterfaceInfo] =
        &[PCIE_DEVICE, CONVENTIONAL_PCI_DEVICE, END_OF_INTERFACES];

    /// The virtio backend embedded in the proxy.
    type Backend: ObjectType;

    /// Where the backend lives inside the proxy under construction.
    fn backend_field(this: &mut MaybeUninit<Self>) -> *mut MaybeUninit<Self::Backend>;

    /// The `TypeInfo` to register, used as `ObjectImpl::TYPE_INFO`: a
    /// concrete type with the virtio-pci interfaces, whose `instance_init`
    /// embeds the backend.
    const VIRTIO_PCI_TYPE_INFO: qom::bindings::TypeInfo = qom::bindings::TypeInfo {
        name: Self::TYPE_NAME.as_ptr(),
        parent: <Self as qom::ObjectImpl>::ParentType::TYPE_NAME.as_ptr(),
        instance_size: size_of::<Self>(),
        instance_align: std::mem::align_of::<Self>(),
        instance_init: Some(rust_proxy_instance_init::<Self>),
        instance_post_init: None,
        instance_finalize: Some(rust_proxy_instance_finalize::<Self>),
        abstract_: false,
        class_size: size_of::<Self::Class>(),
        class_init: Some(rust_proxy_class_init::<Self>),
        class_base_init: None,
        class_data: std::ptr::null(),
        interfaces: Self::INTERFACES.as_ptr(),
    };
}

unsafe extern "C" fn rust_proxy_instance_init<T: VirtioPciProxyImpl>(
    obj: *mut qom::bindings::Object,
) {
    // SAFETY: QOM calls instance_init with zeroed memory for an instance of
    // T, whose parent part is already initialized.
    unsafe {
        let this = &mut *obj.cast::<MaybeUninit<T>>();
        init_backend::<T::Backend>(obj, T::backend_field(this));
    }
}

unsafe extern "C" fn rust_proxy_instance_finalize<T: VirtioPciProxyImpl>(
    obj: *mut qom::bindings::Object,
) {
    // SAFETY: QOM calls instance_finalize once on an instance of T; its
    // parent and backend fields are ManuallyDrop, finalized by QOM itself.
    unsafe { std::ptr::drop_in_place(obj.cast::<T>()) }
}

unsafe extern "C" fn rust_proxy_class_init<T: VirtioPciProxyImpl>(
    klass: *mut qom::bindings::ObjectClass,
    _data: *const c_void,
) {
    // SAFETY: QOM calls class_init with T's class struct, its parent part
    // initialized and the rest zeroed.
    <T as qom::ObjectImpl>::CLASS_INIT(unsafe { &mut *klass.cast::<T::Class>() })
}

unsafe extern "C" fn rust_virtio_pci_realize<T: VirtioPciProxyImpl>(
    proxy: *mut bindings::VirtIOPCIProxy,
    errp: *mut *mut util::bindings::Error,
) {
    // SAFETY: virtio-pci calls k->realize with an instance of T.
    let state = unsafe { &*proxy.cast::<T>() };
    let result = T::VIRTIO_PCI_REALIZE(state);
    // SAFETY: errp comes from virtio-pci's realize.
    unsafe {
        Error::ok_or_propagate(result, errp);
    }
}

impl VirtioPCIClass {
    /// Fill in `VirtioPCIClass` from [`VirtioPciProxyImpl`], then the parent
    /// classes.
    pub fn class_init<T: VirtioPciProxyImpl>(&mut self) {
        self.realize = Some(rust_virtio_pci_realize::<T>);
        self.parent_class.class_init::<T>();
    }
}

/// Initialize the virtio backend embedded in a proxy, as a QOM child of the
/// proxy named "virtio-backend", and alias its properties on the proxy.
///
/// # Safety
///
/// `proxy` must be the proxy object under construction (in its
/// `instance_init`) and `backend` a field of it with room for a `B`; the
/// backend is then finalized by QOM when the proxy is, so the proxy must
/// never drop the field itself.
unsafe fn init_backend<B: ObjectType>(
    proxy: *mut qom::bindings::Object,
    backend: *mut MaybeUninit<B>,
) {
    // SAFETY: guaranteed by the caller; the C function initializes the
    // object in place with the type's instance_init.
    unsafe {
        bindings::virtio_instance_init_common(
            proxy.cast(),
            backend.cast::<c_void>(),
            size_of::<B>(),
            B::TYPE_NAME.as_ptr(),
        );
    }
}

/// Methods of [`VirtIOPCIProxy`] and its subclasses.
pub trait VirtIOPCIProxyMethods: ObjectDeref
where
    Self::Target: IsA<VirtIOPCIProxy>,
{
    /// Offer only the virtio 1.x (modern) interface, with no legacy I/O BAR.
    fn force_virtio_1(&self) {
        assert!(bql::is_locked());
        let proxy: &VirtIOPCIProxy = self.upcast();
        // SAFETY: plain fields written under the BQL before the proxy's PCI
        // regions are created.
        unsafe {
            let p = proxy.as_mut_ptr();
            (*p).disable_modern = false;
            (*p).disable_legacy = bindings::ON_OFF_AUTO_ON;
        }
    }

    /// Realize `backend` on the proxy's virtio bus.
    fn realize_backend(&self, backend: &VirtIODevice) -> Result<()> {
        assert!(bql::is_locked());
        let proxy: &VirtIOPCIProxy = self.upcast();
        // SAFETY: both objects are valid; the bus is a field of the proxy.
        unsafe {
            let bus = std::ptr::addr_of_mut!((*proxy.as_mut_ptr()).bus);
            Error::with_errp(|errp| {
                hwcore::bindings::qdev_realize(backend.as_mut_ptr().cast(), bus.cast(), errp);
            })
        }
    }
}

impl<R: ObjectDeref> VirtIOPCIProxyMethods for R where R::Target: IsA<VirtIOPCIProxy> {}
