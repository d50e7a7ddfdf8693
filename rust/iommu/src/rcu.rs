// SPDX-License-Identifier: GPL-2.0-or-later

//! Read-mostly state that an IOMMU's `translate` reads without a lock:
//! writers (with the BQL) publish immutable snapshots through an atomic
//! pointer, and a replaced snapshot is dropped only after an RCU grace
//! period (`call_rcu`), when no reader can still see it.
//!
//! QEMU calls `translate` with the BQL held or inside an RCU read-side
//! critical section (`IOMMUMemoryRegionClass::translate`'s contract). A
//! reader inside an RCU section keeps a snapshot alive until it leaves;
//! a reader holding the BQL cannot overlap a writer, who needs the BQL
//! too. [`Reader`] is the proof of that context: only this crate makes
//! one, for the duration of a `translate` call.

use std::{
    marker::PhantomData,
    ptr,
    sync::{
        atomic::{AtomicPtr, Ordering},
        Arc,
    },
};

use system::bindings::{call_rcu1, rcu_head};

/// The caller holds the BQL or is inside an RCU read-side critical
/// section, for as long as the `Reader` is borrowed.
pub struct Reader {
    // Neither Send nor Sync: a reader's context is its own thread's.
    _context: PhantomData<*const ()>,
}

impl Reader {
    /// # Safety
    ///
    /// The caller holds the BQL or is inside an RCU read-side critical
    /// section until the returned value is dropped.
    pub(crate) const unsafe fn new() -> Self {
        Self {
            _context: PhantomData,
        }
    }
}

/// An `Arc<T>` that readers load without a lock or a reference count.
pub struct RcuArc<T: Send + Sync + 'static> {
    current: AtomicPtr<T>,
}

impl<T: Send + Sync + 'static> Default for RcuArc<T> {
    fn default() -> Self {
        Self {
            current: AtomicPtr::new(ptr::null_mut()),
        }
    }
}

/// A replaced snapshot, waiting for its grace period.
#[repr(C)]
struct Retired<T> {
    /// First: `call_rcu1` hands back this pointer.
    head: rcu_head,
    value: Arc<T>,
}

unsafe extern "C" fn drop_retired<T>(head: *mut rcu_head) {
    // SAFETY: head is the first field of a Retired<T> leaked by retire().
    drop(unsafe { Box::from_raw(head.cast::<Retired<T>>()) });
}

impl<T: Send + Sync + 'static> RcuArc<T> {
    /// The current snapshot, if any; valid as long as `reader`.
    pub fn load<'r>(&self, _reader: &'r Reader) -> Option<&'r T> {
        let p = self.current.load(Ordering::Acquire);
        // SAFETY: a published pointer comes from Arc::into_raw and is
        // released only after a grace period (retire) or with the BQL
        // held, neither of which can happen while `reader` lives.
        unsafe { p.as_ref() }
    }

    /// Make `value` the snapshot readers see from now on; the one it
    /// replaces is dropped after a grace period. With the BQL held.
    pub fn publish(&self, value: Arc<T>) {
        assert!(bql::is_locked());
        let old = self
            .current
            .swap(Arc::into_raw(value).cast_mut(), Ordering::AcqRel);
        Self::retire(old);
    }

    /// Readers see no snapshot from now on. With the BQL held.
    pub fn clear(&self) {
        assert!(bql::is_locked());
        Self::retire(self.current.swap(ptr::null_mut(), Ordering::AcqRel));
    }

    fn retire(old: *mut T) {
        if old.is_null() {
            return;
        }
        // SAFETY: old came from Arc::into_raw in publish and is no longer
        // reachable through `current`.
        let value = unsafe { Arc::from_raw(old) };
        let retired = Box::into_raw(Box::new(Retired {
            // SAFETY: an all-zero rcu_head is unlinked; call_rcu1 fills it.
            head: unsafe { std::mem::zeroed() },
            value,
        }));
        // SAFETY: retired stays allocated until drop_retired frees it.
        unsafe {
            call_rcu1(retired.cast(), Some(drop_retired::<T>));
        }
    }
}

impl<T: Send + Sync + 'static> Drop for RcuArc<T> {
    fn drop(&mut self) {
        // Readers may still be inside translate on another thread (RCU).
        Self::retire(*self.current.get_mut());
    }
}
