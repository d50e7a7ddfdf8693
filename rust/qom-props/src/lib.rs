// SPDX-License-Identifier: GPL-2.0-or-later

//! QOM and qdev property helpers for Rust devices: array-of-strings
//! properties ([`StringArray`]), property descriptions, and read-only
//! properties whose value is structured data: `qom-get` returns it as
//! JSON, as it does virtio-balloon's `guest-stats`. The object renders the
//! value as JSON text ([`JsonProperty::value`]); the property's getter
//! parses it into a `QObject` and hands that to the visitor, so any QMP
//! client sees objects and lists, not a string.

pub mod bindings;

mod string_array;
pub use string_array::StringArray;

use std::{
    ffi::{c_char, c_void, CStr, CString},
    marker::PhantomData,
    ptr,
};

use qom::{bindings::Object, ObjectType};

/// A read-only property of objects of type `T`.
pub trait JsonProperty<T> {
    /// The property's name and its type name (what `qom-list` shows).
    const NAME: &'static CStr;
    const TYPE: &'static CStr;
    /// A description, for `-device TYPE,help` and `qom-list-properties`.
    const DESCRIPTION: &'static CStr;

    /// The value, as JSON text. Called with the BQL held.
    fn value(obj: &T) -> String;
}

unsafe extern "C" fn rust_get<T, P: JsonProperty<T>>(
    obj: *mut Object,
    v: *mut bindings::Visitor,
    name: *const c_char,
    _opaque: *mut c_void,
    errp: *mut *mut util::bindings::Error,
) {
    // SAFETY: the property was added to T's class, so obj is a T.
    let this = unsafe { &*obj.cast::<T>() };
    // JSON text from Rust has no NUL; one would make it invalid anyway.
    let text = CString::new(P::value(this)).unwrap_or_default();
    // SAFETY: text is a NUL-terminated string that outlives the call; the
    // parser reports a failure through errp and returns NULL.
    let mut value = unsafe { bindings::qobject_from_json(text.as_ptr(), errp) };
    if value.is_null() {
        return;
    }
    // SAFETY: v, name and errp come from QOM's property getter call; the
    // visitor takes its own reference to the value, and ours (the
    // parser's) is dropped as qobject_unref does: the value is destroyed
    // when that was the last one.
    unsafe {
        bindings::visit_type_any(v, name, &mut value, errp);
        (*value).base.refcnt -= 1;
        if (*value).base.refcnt == 0 {
            bindings::qobject_destroy(value);
        }
    }
}

struct Getter<T, P>(PhantomData<(T, P)>);

impl<T, P: JsonProperty<T>> Getter<T, P> {
    const GET: bindings::ObjectPropertyAccessor = Some(rust_get::<T, P>);
}

/// Add `P` to the class `klass` of `T` (from `T`'s `class_init`).
pub fn add_class_property<T: ObjectType, P: JsonProperty<T>>(klass: &mut T::Class) {
    let klass = ptr::from_mut(klass).cast::<qom::bindings::ObjectClass>();
    // SAFETY: klass is T's class being initialized; the names are static;
    // a property with no setter is read-only, with no release and no
    // opaque.
    unsafe {
        bindings::object_class_property_add(
            klass,
            P::NAME.as_ptr(),
            P::TYPE.as_ptr(),
            Getter::<T, P>::GET,
            None,
            None,
            ptr::null_mut(),
        );
        bindings::object_class_property_set_description(
            klass,
            P::NAME.as_ptr(),
            P::DESCRIPTION.as_ptr(),
        );
    }
}

/// Describe the class property `name` of `T` (shown by `-device
/// TYPE,help` and `qom-list-properties`); from `T`'s `class_init`, once
/// the property exists (qdev properties do after the parent's
/// `class_init`). A name the class lacks is ignored.
pub fn describe_class_property<T: ObjectType>(
    klass: &mut T::Class,
    name: &'static CStr,
    description: &'static CStr,
) {
    let klass = ptr::from_mut(klass).cast::<qom::bindings::ObjectClass>();
    // SAFETY: klass is T's class being initialized; the strings are
    // static (QOM copies them).
    unsafe {
        bindings::object_class_property_set_description(klass, name.as_ptr(), description.as_ptr());
    }
}

/// `s` as a JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
