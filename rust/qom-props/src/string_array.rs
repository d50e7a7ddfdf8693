// SPDX-License-Identifier: GPL-2.0-or-later

//! A qdev array property of strings (C's `DEFINE_PROP_ARRAY` of
//! `qdev_prop_string`) as one field of a Rust device: `-device
//! '{"driver": ..., "NAME": ["a", "b"]}'` on the command line, a list of
//! strings for the device.

use std::{
    ffi::{c_char, c_int, CStr},
    mem::{offset_of, size_of},
    ptr::addr_of,
};

use common::Zeroable;
use hwcore::bindings::{qdev_prop_array, qdev_prop_string, Property, Property__bindgen_ty_1};

/// The field: the element count and the array, both set by qdev before
/// realize and read-only afterwards. qdev frees the strings when the
/// device is finalized; the array itself is freed when the field is
/// dropped.
#[repr(C)]
#[derive(Debug)]
pub struct StringArray {
    count: u32,
    entries: *mut *mut c_char,
}

// SAFETY: qdev writes the field before realize, with the BQL held, and it
// is only read afterwards.
unsafe impl Send for StringArray {}
unsafe impl Sync for StringArray {}

impl StringArray {
    /// The property `name` of a device whose `StringArray` field is at
    /// `offset` (`offset_of!(Device, field)`), empty by default.
    pub const fn property(name: &'static CStr, offset: usize) -> Property {
        Property {
            name: name.as_ptr(),
            info: addr_of!(qdev_prop_array),
            offset: (offset + offset_of!(Self, count)) as isize,
            set_default: true,
            defval: Property__bindgen_ty_1 { u: 0 },
            arrayinfo: addr_of!(qdev_prop_string),
            arrayoffset: (offset + offset_of!(Self, entries)) as c_int,
            arrayfieldsize: size_of::<*mut c_char>() as c_int,
            ..Zeroable::ZERO
        }
    }

    /// The strings, as set by the user (a NULL element reads as empty).
    pub fn to_vec(&self) -> Vec<String> {
        if self.count == 0 || self.entries.is_null() {
            return Vec::new();
        }
        // SAFETY: qdev's array property allocated `count` pointers, each to
        // a NUL-terminated string or NULL, and frees the strings only when
        // the device is finalized.
        let entries = unsafe { std::slice::from_raw_parts(self.entries, self.count as usize) };
        entries
            .iter()
            .map(|&p| {
                if p.is_null() {
                    String::new()
                } else {
                    // SAFETY: see above.
                    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
                }
            })
            .collect()
    }
}

impl Drop for StringArray {
    fn drop(&mut self) {
        // SAFETY: the array was allocated with g_malloc by qdev (or is
        // NULL); qdev's release of the property freed only the strings.
        unsafe { glib_sys::g_free(self.entries.cast()) }
    }
}
