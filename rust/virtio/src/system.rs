// SPDX-License-Identifier: GPL-2.0-or-later

//! Machine-level services a device needs: system reset handlers and the
//! host page size.

use crate::bindings;

/// State a device keeps across its own reset but restores on a machine
/// reset (`qemu_register_reset`).
pub trait SystemReset: Sync {
    fn system_reset(&self);
}

unsafe extern "C" fn rust_system_reset<T: SystemReset>(opaque: *mut std::ffi::c_void) {
    // SAFETY: registered below with a &T that stays valid until unregistered.
    unsafe { &*opaque.cast::<T>() }.system_reset();
}

/// Run `dev.system_reset()` on every system reset until
/// [`unregister_system_reset`] is called with the same `dev`.
pub fn register_system_reset<T: SystemReset>(dev: &T) {
    assert!(bql::is_locked());
    // SAFETY: the caller unregisters before `dev` goes away (at unrealize).
    unsafe {
        bindings::qemu_register_reset(
            Some(rust_system_reset::<T>),
            std::ptr::from_ref(dev).cast_mut().cast(),
        );
    }
}

/// Undo [`register_system_reset`].
pub fn unregister_system_reset<T: SystemReset>(dev: &T) {
    assert!(bql::is_locked());
    // SAFETY: removes the (function, opaque) pair registered above, if any.
    unsafe {
        bindings::qemu_unregister_reset(
            Some(rust_system_reset::<T>),
            std::ptr::from_ref(dev).cast_mut().cast(),
        );
    }
}

/// The host's page size, as QEMU's `qemu_real_host_page_size()`.
pub fn host_page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).expect("sysconf(_SC_PAGESIZE)")
}
