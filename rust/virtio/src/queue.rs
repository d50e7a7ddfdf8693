// SPDX-License-Identifier: GPL-2.0-or-later

//! Virtqueues from the device side: popping the driver's buffers, reading
//! and writing them, and giving them back.
//!
//! Two ways to take a chain: [`VirtQueue::pop`] maps its buffers
//! (`virtqueue_pop`), for devices that move data through them;
//! [`VirtQueue::pop_request`] suits small requests and answers, which it
//! copies without mapping or allocating anything when the chain is plain
//! guest RAM (`virtqueue_copy_pop`), and otherwise falls back to `pop`.

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

/// A request chain taken by [`VirtQueue::pop_request`], its readable
/// bytes already copied out. [`VirtQueue::push_request`] answers it;
/// dropping it gives it back unused.
#[derive(Debug)]
pub enum RequestChain {
    /// Taken without mapping (`virtqueue_copy_pop`).
    Copied(CopiedChain),
    /// Taken by `virtqueue_pop`, its buffers mapped.
    Mapped(VirtQueueElement),
}

/// A chain `virtqueue_copy_pop` took: where its writable buffers are.
#[derive(Debug)]
pub struct CopiedChain {
    elem: bindings::VirtQueueCopyElement,
    vq: NonNull<bindings::VirtQueue>,
}

impl VirtQueue {
    /// Take the next available chain and copy the start of its readable
    /// part into `buf`; returns the chain and the number of bytes copied.
    /// With `copy`, a chain in plain guest RAM is taken without mapping
    /// it; any other chain, or every chain without `copy`, is taken with
    /// [`VirtQueue::pop`]. Either way the queue's state and the driver's
    /// view of it are the same, and so is every error a malformed chain
    /// raises (the virtio core's).
    pub fn pop_request(&self, buf: &mut [u8], copy: bool) -> Option<(RequestChain, usize)> {
        assert!(bql::is_locked());
        if copy {
            let mut elem = bindings::VirtQueueCopyElement::default();
            // SAFETY: the queue is valid; virtqueue_copy_pop writes at most
            // buf.len() bytes to buf and fills elem.
            let taken = unsafe {
                bindings::virtqueue_copy_pop(
                    self.0.as_ptr(),
                    &mut elem,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            match taken {
                0 => return None,
                1 => {
                    let copied = elem.out_len.min(buf.len());
                    let chain = CopiedChain { elem, vq: self.0 };
                    return Some((RequestChain::Copied(chain), copied));
                }
                _ => {}
            }
        }
        let elem = self.pop()?;
        let copied = elem.read_into(buf);
        Some((RequestChain::Mapped(elem), copied))
    }

    /// Answer `chain`: copy `data` to the start of its writable buffers and
    /// give it back as used with the length that fitted, which is returned.
    pub fn push_request(&self, chain: RequestChain, data: &[u8]) -> usize {
        assert!(bql::is_locked());
        match chain {
            RequestChain::Copied(chain) => {
                assert_eq!(chain.vq, self.0, "chain pushed to another queue");
                let chain = std::mem::ManuallyDrop::new(chain);
                // SAFETY: the chain was taken from this queue and is
                // consumed here (ManuallyDrop: not detached as well); the
                // C side reads at most data.len() bytes of data.
                unsafe {
                    bindings::virtqueue_copy_push(
                        self.0.as_ptr(),
                        &chain.elem,
                        data.as_ptr().cast(),
                        data.len(),
                    )
                }
            }
            RequestChain::Mapped(elem) => {
                let written = elem.write(data);
                self.push(elem, u32::try_from(written).unwrap_or(u32::MAX));
                written
            }
        }
    }
}

impl RequestChain {
    /// Total size of the device-writable buffers.
    pub fn writable_len(&self) -> usize {
        match self {
            Self::Copied(c) => c.elem.in_len,
            Self::Mapped(e) => e.writable_len(),
        }
    }
}

impl Drop for CopiedChain {
    /// Give the chain back without marking it used.
    fn drop(&mut self) {
        assert!(bql::is_locked());
        // SAFETY: the chain was taken from vq, which outlives it (queues
        // are deleted at unrealize, when no chain is held).
        unsafe { bindings::virtqueue_copy_detach(self.vq.as_ptr(), &self.elem) }
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
