// SPDX-License-Identifier: GPL-2.0-or-later

//! Virtqueues from the device side: popping the driver's buffers, reading
//! and writing them, and giving them back.

use std::ptr::NonNull;

use crate::bindings;

/// A virtqueue created by `add_queue`. It belongs to the device and is
/// given back with `VirtIODeviceMethods::delete_queue` at unrealize.
#[derive(Debug)]
pub struct VirtQueue(pub(crate) NonNull<bindings::VirtQueue>);

// SAFETY: virtqueues are only used with the BQL held.
unsafe impl Send for VirtQueue {}
unsafe impl Sync for VirtQueue {}

/// A chain of buffers popped from a virtqueue. [`VirtQueue::push`] gives it
/// back as used; dropping it gives it back unused (detached), so no path
/// leaves the driver's buffers with the device.
#[derive(Debug)]
pub struct VirtQueueElement {
    elem: NonNull<bindings::VirtQueueElement>,
    vq: NonNull<bindings::VirtQueue>,
}

impl VirtQueue {
    /// Take the next available buffer chain, if the driver made one
    /// available. A malformed chain makes the virtio core mark the device
    /// broken and return `None`.
    pub fn pop(&self) -> Option<VirtQueueElement> {
        assert!(bql::is_locked());
        // SAFETY: the queue is valid; virtqueue_pop allocates an element of
        // the requested size with g_malloc, or returns NULL.
        let elem = unsafe {
            bindings::virtqueue_pop(
                self.0.as_ptr(),
                std::mem::size_of::<bindings::VirtQueueElement>(),
            )
        };
        NonNull::new(elem.cast()).map(|elem| VirtQueueElement { elem, vq: self.0 })
    }

    /// Give `elem` back to the driver as used, with `len` bytes written.
    pub fn push(&self, elem: VirtQueueElement, len: u32) {
        assert!(bql::is_locked());
        assert_eq!(elem.vq, self.0, "element pushed to another queue");
        let elem = std::mem::ManuallyDrop::new(elem);
        // SAFETY: elem was popped from this queue; it is consumed here and
        // not dropped (ManuallyDrop).
        unsafe {
            bindings::virtqueue_push(self.0.as_ptr(), elem.elem.as_ptr(), len);
            glib_sys::g_free(elem.elem.as_ptr().cast());
        }
    }
}

impl VirtQueueElement {
    fn elem(&self) -> &bindings::VirtQueueElement {
        // SAFETY: the element is valid until pushed or dropped.
        unsafe { self.elem.as_ref() }
    }

    /// Total size of the device-writable buffers.
    pub fn writable_len(&self) -> usize {
        let e = self.elem();
        // SAFETY: in_sg holds in_num iovecs mapped by virtqueue_pop.
        unsafe { bindings::iov_size(e.in_sg, e.in_num) }
    }

    /// Copy the start of the device-readable part into `buf`; returns the
    /// number of bytes copied (no allocation, for small fixed requests).
    pub fn read_into(&self, buf: &mut [u8]) -> usize {
        let e = self.elem();
        // SAFETY: copies at most buf.len() bytes out of the mapped iovecs.
        unsafe {
            bindings::iov_to_buf_full(e.out_sg, e.out_num, 0, buf.as_mut_ptr().cast(), buf.len())
        }
    }

    /// Copy `data` to the start of the writable buffers; returns how many
    /// bytes fitted.
    pub fn write(&self, data: &[u8]) -> usize {
        let e = self.elem();
        // SAFETY: copies at most data.len() bytes into the mapped iovecs.
        unsafe {
            bindings::iov_from_buf_full(e.in_sg, e.in_num, 0, data.as_ptr().cast(), data.len())
        }
    }
}

impl Drop for VirtQueueElement {
    /// Give the element back without marking it used.
    fn drop(&mut self) {
        assert!(bql::is_locked());
        // SAFETY: the element was popped from vq, which outlives it (queues
        // are deleted at unrealize, when no element is held).
        unsafe {
            bindings::virtqueue_detach_element(self.vq.as_ptr(), self.elem.as_ptr(), 0);
            glib_sys::g_free(self.elem.as_ptr().cast());
        }
    }
}
