// SPDX-License-Identifier: GPL-2.0-or-later

//! `VMState` fields whose bytes Rust code writes and reads.
//!
//! QEMU's Rust `migration` crate describes fixed-layout state. State of
//! variable size (trees, lists whose end is a marker byte), or state that
//! must be checked as a whole before any of it is applied, needs code: a
//! `VMStateInfo` with `get` and `put` callbacks. This crate gives a device
//! that as a trait, [`VMStateCodec`], and a [`field`] to put in a
//! `VMStateDescription`, with the stream as a [`QemuFile`].

pub mod bindings;

use std::{
    ffi::{c_int, c_void, CStr},
    marker::PhantomData,
    ptr::NonNull,
};

use common::Zeroable;
use migration::bindings::{JSONWriter, QEMUFile, VMStateField, VMStateFlags, VMStateInfo};

/// A read from a stream that has failed: it ended early, or an earlier
/// read or write failed. QEMU's accessors then return zeroes, so what was
/// read must not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamError;

/// The migration stream, for the duration of one `get` or `put`.
#[derive(Debug)]
pub struct QemuFile<'a> {
    f: NonNull<QEMUFile>,
    _stream: PhantomData<&'a mut QEMUFile>,
}

impl QemuFile<'_> {
    /// # Safety
    ///
    /// `f` must be a valid `QEMUFile`, used by nothing else while the
    /// returned value lives (as in a `VMState` callback).
    unsafe fn from_raw(f: *mut QEMUFile) -> Option<Self> {
        NonNull::new(f).map(|f| Self {
            f,
            _stream: PhantomData,
        })
    }

    fn checked<T>(&self, value: T) -> Result<T, StreamError> {
        // SAFETY: the file is valid (from_raw).
        match unsafe { bindings::qemu_file_get_error(self.f.as_ptr()) } {
            0 => Ok(value),
            _ => Err(StreamError),
        }
    }

    pub fn get_u8(&mut self) -> Result<u8, StreamError> {
        // SAFETY: the file is valid (from_raw). qemu_get_byte returns a
        // byte (0 after an error, caught by checked()).
        let byte = unsafe { bindings::qemu_get_byte(self.f.as_ptr()) };
        self.checked(byte as u8)
    }

    pub fn get_be32(&mut self) -> Result<u32, StreamError> {
        // SAFETY: the file is valid (from_raw).
        let value = unsafe { bindings::qemu_get_be32(self.f.as_ptr()) };
        self.checked(value)
    }

    pub fn get_be64(&mut self) -> Result<u64, StreamError> {
        // SAFETY: the file is valid (from_raw).
        let value = unsafe { bindings::qemu_get_be64(self.f.as_ptr()) };
        self.checked(value)
    }

    /// Fill `buf` from the stream.
    pub fn get_bytes(&mut self, buf: &mut [u8]) -> Result<(), StreamError> {
        // SAFETY: the file is valid (from_raw); qemu_get_buffer writes at
        // most buf.len() bytes into buf.
        let n = unsafe { bindings::qemu_get_buffer(self.f.as_ptr(), buf.as_mut_ptr(), buf.len()) };
        self.checked(())?;
        if n == buf.len() {
            Ok(())
        } else {
            Err(StreamError)
        }
    }

    /// Append `bytes` to the stream. A failure is recorded in the file,
    /// which QEMU checks after the callback.
    pub fn put_bytes(&mut self, bytes: &[u8]) {
        // SAFETY: the file is valid (from_raw); the buffer is copied or
        // written before the call returns.
        unsafe { bindings::qemu_put_buffer(self.f.as_ptr(), bytes.as_ptr(), bytes.len()) }
    }
}

/// State that saves and loads itself, as one `VMState` field (see [`field`])
/// of the object implementing it. The callbacks run with the BQL held. An
/// object with more than one such field (one in a subsection, say)
/// implements the trait once per field, each with its own key type `K`
/// (see [`keyed_field`]).
pub trait VMStateCodec<K = ()>: Sync {
    /// The field's type in the stream's JSON description.
    const TYPE_NAME: &'static CStr;

    /// Write the state.
    fn save(&self, f: &mut QemuFile<'_>);

    /// Read what [`Self::save`] wrote and apply it. An error fails the load
    /// with its message; the object must then be as it was before the call
    /// (check everything before changing anything).
    fn load(&self, f: &mut QemuFile<'_>) -> util::Result<()>;
}

/// Report `err` as QEMU reports errors (`error_report_err`).
fn report(err: util::Error) {
    let mut raw = std::ptr::null_mut();
    // SAFETY: propagate fills the local pointer with a new Error, which
    // error_report_err takes over and frees.
    unsafe {
        err.propagate(&mut raw);
        util::bindings::error_report_err(raw);
    }
}

/// A `post_load` outcome for QEMU, whose `post_load` takes no `Error`:
/// an error is reported, with its message, and fails the load.
pub fn post_load_result(result: util::Result<()>) -> Result<(), common::errno::Errno> {
    result.map_err(|e| {
        report(e);
        std::io::ErrorKind::InvalidInput.into()
    })
}

unsafe extern "C" fn rust_get<T: VMStateCodec<K>, K>(
    f: *mut QEMUFile,
    pv: *mut c_void,
    _size: usize,
    _field: *const VMStateField,
) -> c_int {
    // SAFETY: a field made by field::<T>() has offset 0, so pv is the
    // object whose VMStateDescription holds it, a T; f is the stream being
    // loaded, used only by this callback until it returns.
    let (state, file) = unsafe { (&*pv.cast::<T>(), QemuFile::from_raw(f)) };
    let Some(mut file) = file else {
        return -libc::EINVAL;
    };
    match state.load(&mut file) {
        Ok(()) => 0,
        Err(e) => {
            report(e);
            -libc::EINVAL
        }
    }
}

unsafe extern "C" fn rust_put<T: VMStateCodec<K>, K>(
    f: *mut QEMUFile,
    pv: *mut c_void,
    _size: usize,
    _field: *const VMStateField,
    _vmdesc: *mut JSONWriter,
) -> c_int {
    // SAFETY: as for rust_get, for the stream being saved.
    let (state, file) = unsafe { (&*pv.cast::<T>(), QemuFile::from_raw(f)) };
    let Some(mut file) = file else {
        return -libc::EINVAL;
    };
    state.save(&mut file);
    0
}

struct Info<T, K>(PhantomData<(T, K)>);

impl<T: VMStateCodec<K>, K> Info<T, K> {
    const INFO: VMStateInfo = VMStateInfo {
        name: T::TYPE_NAME.as_ptr(),
        get: Some(rust_get::<T, K>),
        put: Some(rust_put::<T, K>),
    };
}

/// A field `name` of a `VMStateDescription` of `T` whose bytes are
/// `T`'s [`VMStateCodec`] (the whole object is passed to it).
#[must_use]
pub const fn field<T: VMStateCodec>(name: &'static CStr) -> VMStateField {
    keyed_field::<T, ()>(name)
}

/// A field `name` whose bytes are `T`'s codec for key `K`.
#[must_use]
pub const fn keyed_field<T: VMStateCodec<K>, K>(name: &'static CStr) -> VMStateField {
    VMStateField {
        name: name.as_ptr(),
        info: &Info::<T, K>::INFO,
        flags: VMStateFlags::VMS_SINGLE,
        ..Zeroable::ZERO
    }
}
