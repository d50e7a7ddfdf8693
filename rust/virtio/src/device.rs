// SPDX-License-Identifier: GPL-2.0-or-later

//! Subclassing `TYPE_VIRTIO_DEVICE` from Rust: the [`VirtIODevice`] wrapper,
//! the [`VirtioDeviceImpl`] vtable trait and the device-side virtio calls.

use std::{
    ffi::{c_char, CStr, CString},
    ptr::{addr_of, NonNull},
};

use common::{Opaque, Zeroable};
use hwcore::{DeviceImpl, DeviceState};
use migration::{
    bindings::{VMStateField, VMStateFlags},
    VMStateDescription,
};
use qom::prelude::*;
use util::{Error, Result};

pub use crate::bindings::VirtioDeviceClass;
use crate::{bindings, VirtQueue};

/// A safe wrapper around [`bindings::VirtIODevice`].
#[repr(transparent)]
#[derive(Debug, common::Wrapper)]
pub struct VirtIODevice(Opaque<bindings::VirtIODevice>);

// SAFETY: virtio devices are only accessed with the BQL held.
unsafe impl Send for VirtIODevice {}
unsafe impl Sync for VirtIODevice {}

// SAFETY: TYPE_VIRTIO_DEVICE's instance and class structs are the bindgen ones.
unsafe impl ObjectType for VirtIODevice {
    type Class = VirtioDeviceClass;
    const TYPE_NAME: &'static CStr =
        // SAFETY: bindgen emits the C string constant with its terminating NUL.
        unsafe { CStr::from_bytes_with_nul_unchecked(bindings::TYPE_VIRTIO_DEVICE) };
}

qom_isa!(VirtIODevice: DeviceState, Object);

/// Virtual methods of a virtio device (`VirtioDeviceClass`). Note that the
/// qdev-level `DeviceImpl::REALIZE` must stay `None`: the virtio core's own
/// realize calls [`VirtioDeviceImpl::VIRTIO_REALIZE`] and then plugs the
/// device into its transport.
pub trait VirtioDeviceImpl: DeviceImpl + IsA<VirtIODevice> {
    /// Realize the device: check properties, `virtio_init`, add queues.
    const VIRTIO_REALIZE: fn(&Self) -> Result<()>;
    /// Undo what [`Self::VIRTIO_REALIZE`] did.
    const VIRTIO_UNREALIZE: Option<fn(&Self)> = None;
    /// Add the device's feature bits to those the transport offers.
    const GET_FEATURES: Option<fn(&Self, u64) -> u64> = None;
    /// Fill the config space (its length is the size given to `virtio_init`).
    const GET_CONFIG: Option<fn(&Self, &mut [u8])> = None;
    /// Take the config space after a driver write into it.
    const SET_CONFIG: Option<fn(&Self, &[u8])> = None;
    /// The driver made buffers available on a queue added with a handler:
    /// called with the queue's index.
    const HANDLE_OUTPUT: Option<fn(&Self, u16)> = None;
    /// The device's own state (`vdc->vmsd`), which the virtio core saves
    /// and loads after its own (status, features, queues) within the
    /// [`VMSTATE_VIRTIO_DEVICE`] field of the device's `VMSTATE`.
    const VIRTIO_VMSTATE: Option<VMStateDescription<Self>> = None;
}

/// The field of a virtio device's `VMSTATE` (`DeviceImpl::VMSTATE`) that
/// holds everything the virtio core migrates for it, then its
/// [`VirtioDeviceImpl::VIRTIO_VMSTATE`]: C's `VMSTATE_VIRTIO_DEVICE`.
pub const VMSTATE_VIRTIO_DEVICE: VMStateField = VMStateField {
    name: c"virtio".as_ptr(),
    info: addr_of!(bindings::virtio_vmstate_info),
    flags: VMStateFlags::VMS_SINGLE,
    ..Zeroable::ZERO
};

unsafe extern "C" fn rust_handle_output<T: VirtioDeviceImpl>(
    vdev: *mut bindings::VirtIODevice,
    vq: *mut bindings::VirtQueue,
) {
    // SAFETY: the virtio core calls the handler with an instance of T and
    // one of its queues.
    let (state, index) = unsafe { (&*vdev.cast::<T>(), bindings::virtio_get_queue_index(vq)) };
    T::HANDLE_OUTPUT.unwrap()(state, index);
}

/// Add a virtqueue of `size` entries to `dev`. With `handled`, driver
/// notifications call [`VirtioDeviceImpl::HANDLE_OUTPUT`]; without, they are
/// ignored and the buffers stay with the device.
pub fn add_queue<T: VirtioDeviceImpl>(dev: &T, size: u16, handled: bool) -> VirtQueue {
    assert!(bql::is_locked());
    assert!(!handled || T::HANDLE_OUTPUT.is_some());
    let handler: bindings::VirtIOHandleOutput = if handled {
        Some(rust_handle_output::<T>)
    } else {
        None
    };
    // SAFETY: the device is being realized and has room for more queues
    // (virtio_add_queue aborts past VIRTIO_QUEUE_MAX, a programming error).
    let vq = unsafe { bindings::virtio_add_queue(dev.vdev_ptr(), size.into(), handler) };
    VirtQueue(NonNull::new(vq).expect("virtio_add_queue"))
}

/// Recover `&T` and the config slice from the C arguments.
///
/// # Safety
///
/// `vdev` must be a realized instance of `T` whose `config` buffer holds
/// `config_len` bytes, as it does in the virtio core's config accessors.
unsafe fn config_args<'a, T>(vdev: *mut bindings::VirtIODevice) -> (&'a T, usize) {
    // SAFETY: guaranteed by the caller.
    unsafe { (&*vdev.cast::<T>(), (*vdev).config_len) }
}

unsafe extern "C" fn rust_virtio_realize<T: VirtioDeviceImpl>(
    dev: *mut hwcore::bindings::DeviceState,
    errp: *mut *mut util::bindings::Error,
) {
    // SAFETY: the virtio core calls vdc->realize with an instance of T.
    let state = unsafe { &*dev.cast::<T>() };
    let result = T::VIRTIO_REALIZE(state);
    // SAFETY: errp comes from the virtio core's realize.
    unsafe {
        Error::ok_or_propagate(result, errp);
    }
}

unsafe extern "C" fn rust_virtio_unrealize<T: VirtioDeviceImpl>(
    dev: *mut hwcore::bindings::DeviceState,
) {
    // SAFETY: the virtio core calls vdc->unrealize with an instance of T.
    T::VIRTIO_UNREALIZE.unwrap()(unsafe { &*dev.cast::<T>() });
}

unsafe extern "C" fn rust_get_features<T: VirtioDeviceImpl>(
    vdev: *mut bindings::VirtIODevice,
    features: u64,
    _errp: *mut *mut util::bindings::Error,
) -> u64 {
    // SAFETY: the virtio core calls vdc->get_features with an instance of T.
    T::GET_FEATURES.unwrap()(unsafe { &*vdev.cast::<T>() }, features)
}

unsafe extern "C" fn rust_get_config<T: VirtioDeviceImpl>(
    vdev: *mut bindings::VirtIODevice,
    config: *mut u8,
) {
    // SAFETY: called by the virtio core with its config buffer of config_len
    // bytes, which nothing else accesses during the call (BQL).
    unsafe {
        let (state, len) = config_args::<T>(vdev);
        T::GET_CONFIG.unwrap()(state, std::slice::from_raw_parts_mut(config, len));
    }
}

unsafe extern "C" fn rust_set_config<T: VirtioDeviceImpl>(
    vdev: *mut bindings::VirtIODevice,
    config: *const u8,
) {
    // SAFETY: as for rust_get_config.
    unsafe {
        let (state, len) = config_args::<T>(vdev);
        T::SET_CONFIG.unwrap()(state, std::slice::from_raw_parts(config, len));
    }
}

impl VirtioDeviceClass {
    /// Fill in `VirtioDeviceClass` from [`VirtioDeviceImpl`], then the
    /// parent classes.
    pub fn class_init<T: VirtioDeviceImpl>(&mut self) {
        self.realize = Some(rust_virtio_realize::<T>);
        if T::VIRTIO_UNREALIZE.is_some() {
            self.unrealize = Some(rust_virtio_unrealize::<T>);
        }
        if T::GET_FEATURES.is_some() {
            self.get_features = Some(rust_get_features::<T>);
        }
        if T::GET_CONFIG.is_some() {
            self.get_config = Some(rust_get_config::<T>);
        }
        if T::SET_CONFIG.is_some() {
            self.set_config = Some(rust_set_config::<T>);
        }
        if let Some(ref vmsd) = T::VIRTIO_VMSTATE {
            self.vmsd = vmsd.as_ref();
        }
        self.parent.class_init::<T>();
    }
}

/// Methods of [`VirtIODevice`] and its subclasses.
pub trait VirtIODeviceMethods: ObjectDeref
where
    Self::Target: IsA<VirtIODevice>,
{
    /// Raw pointer for calls into the virtio core.
    fn vdev_ptr(&self) -> *mut bindings::VirtIODevice {
        let vdev: &VirtIODevice = self.upcast();
        vdev.as_mut_ptr()
    }

    /// `virtio_init`: set the device id and allocate the config space.
    fn virtio_init(&self, device_id: u16, config_size: usize) {
        assert!(bql::is_locked());
        // SAFETY: the device is being realized; the core owns the buffers it
        // allocates until virtio_cleanup.
        unsafe { bindings::virtio_init(self.vdev_ptr(), device_id, config_size) }
    }

    /// `virtio_cleanup`: free what `virtio_init` allocated.
    fn virtio_cleanup(&self) {
        assert!(bql::is_locked());
        // SAFETY: called once, at unrealize (or on a failed realize).
        unsafe { bindings::virtio_cleanup(self.vdev_ptr()) }
    }

    /// Give back a queue created by [`add_queue`].
    fn delete_queue(&self, vq: VirtQueue) {
        assert!(bql::is_locked());
        // SAFETY: vq came from virtio_add_queue and is deleted once (by value).
        unsafe { bindings::virtio_delete_queue(vq.0.as_ptr()) }
    }

    /// Tell the driver that `vq` has used buffers (an interrupt, unless
    /// the driver suppressed it).
    fn notify(&self, vq: &VirtQueue) {
        assert!(bql::is_locked());
        // SAFETY: vq belongs to this device.
        unsafe { bindings::virtio_notify(self.vdev_ptr(), vq.0.as_ptr()) }
    }

    /// Whether the driver accepted feature bit `bit` (below 64).
    fn guest_has_feature(&self, bit: u32) -> bool {
        assert!(bit < 64);
        // SAFETY: reading a plain field under the BQL; the first 64 feature
        // bits are the first element of the feature union.
        let features = unsafe { (*self.vdev_ptr()).guest_features() };
        features & (1u64 << bit) != 0
    }

    /// Report a driver error: the device is marked broken (`NEEDS_RESET`) until
    /// the driver resets it, as `virtio_error` does for C devices.
    fn virtio_error(&self, msg: &str) {
        assert!(bql::is_locked());
        let msg = CString::new(msg.replace('\0', " ")).unwrap();
        // SAFETY: "%s" consumes exactly the one C string passed.
        unsafe {
            bindings::virtio_error(
                self.vdev_ptr(),
                c"%s".as_ptr(),
                msg.as_ptr().cast::<c_char>(),
            )
        }
    }
}

impl<R: ObjectDeref> VirtIODeviceMethods for R where R::Target: IsA<VirtIODevice> {}

impl bindings::VirtIODevice {
    /// The first 64 feature bits the driver accepted.
    fn guest_features(&self) -> u64 {
        // SAFETY: both members of the union are plain integers.
        unsafe { self.__bindgen_anon_2.guest_features }
    }
}
