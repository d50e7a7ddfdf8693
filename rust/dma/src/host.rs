// SPDX-License-Identifier: GPL-2.0-or-later

//! The payload of an IOTLB entry: the target block mapped into host
//! memory when it is RAM, through a `MemoryRegionCache` (which holds a
//! reference to the RAM's region, so the pointer stays valid while the
//! entry lives, and marks written bytes dirty for migration and TCG).

use std::mem::MaybeUninit;

use qemu_dma_core::{Access, Transfer};
use system::bindings::{
    address_space_cache_destroy, address_space_cache_init, address_space_cache_invalidate,
    AddressSpace, MemoryRegionCache, MEMTX_OK,
};

/// A cached block of a target address space.
///
/// The block is mapped at its second access, not when it is cached: the
/// first goes through QEMU (one `address_space_rw` on the target, which
/// costs less than making and later destroying a `MemoryRegionCache`).
/// A buffer a strict-mode guest maps for one I/O and unmaps after it is
/// touched once, so never pays for a mapping; rings and buffers that are
/// used again are mapped from their second access on.
pub struct HostBlock {
    target_as: *mut AddressSpace,
    /// First target address of the block.
    start: u64,
    /// Bytes in the block.
    size: u64,
    /// Accessed at most once so far: not mapped yet.
    fresh: bool,
    /// The RAM mapping, when the block is RAM the access may touch
    /// directly; boxed because QEMU's cache must not move while mapped.
    cache: Option<Box<MemoryRegionCache>>,
    /// Bytes from `start` the cache maps (it may stop short of the block
    /// where RAM ends).
    len: u64,
    /// The cache was made for writing (reads are then direct too).
    writable: bool,
}

impl HostBlock {
    /// The block `[start, start + mask]` of `target_as`, not mapped yet.
    pub const fn new(target_as: *mut AddressSpace, start: u64, mask: u64) -> Self {
        Self {
            target_as,
            start,
            size: mask + 1,
            fresh: true,
            cache: None,
            len: 0,
            writable: false,
        }
    }

    fn map(&mut self, len: u64, access: Access) {
        self.unmap();
        let write = access == Access::Write;
        let mut cache = Box::new(MaybeUninit::<MemoryRegionCache>::zeroed());
        // SAFETY: an all-zero cache is an empty one; QEMU fills it in (and
        // takes its references) whatever it returns, so it is destroyed
        // below unless it maps RAM.
        let (mapped, mut cache) = unsafe {
            let mapped = address_space_cache_init(
                cache.as_mut_ptr(),
                self.target_as,
                self.start,
                len,
                write,
            );
            (mapped, cache.assume_init())
        };
        if mapped > 0 && !cache.ptr.is_null() {
            self.len = mapped.unsigned_abs().min(len);
            self.writable = write;
            self.cache = Some(cache);
        } else {
            // SAFETY: initialized above (or left empty on failure).
            unsafe {
                address_space_cache_destroy(&mut *cache);
            }
        }
    }

    fn unmap(&mut self) {
        if let Some(mut cache) = self.cache.take() {
            // SAFETY: a cache initialized by map().
            unsafe {
                address_space_cache_destroy(&mut *cache);
            }
        }
        self.len = 0;
    }

    pub const fn target_as(&self) -> *mut AddressSpace {
        self.target_as
    }

    /// Take the next piece of `t` (which goes to `target`, with `room`
    /// bytes of the block left from there) as a span of host RAM to copy,
    /// or `None` (taking nothing) if the block is not directly accessible
    /// for `access`, or not yet (its first access).
    pub fn span(
        &mut self,
        target: u64,
        room: u64,
        t: &mut Transfer,
        access: Access,
    ) -> Option<Span> {
        if self.fresh {
            self.fresh = false;
            return None;
        }
        if self.len == 0 && self.size != 0 {
            // The second access: map it (once; what is not RAM stays
            // unmapped, size 0).
            let size = std::mem::take(&mut self.size);
            self.map(size, access);
        } else if access == Access::Write && !self.writable && self.cache.is_some() {
            // A page first read, now written: map it again for writing
            // (RAM that refuses direct writes, ROM, stays uncached).
            let len = self.len;
            self.map(len, Access::Write);
        }
        let cache = self.cache.as_deref_mut()?;
        let offset = target.checked_sub(self.start)?;
        let room = room.min(self.len.checked_sub(offset)?);
        if room == 0 {
            return None;
        }
        let (_, done, n) = t.take(room);
        Some(Span {
            // SAFETY: cache.ptr maps self.len bytes from start, and
            // offset < self.len.
            host: unsafe { cache.ptr.add(offset as usize) },
            done,
            len: n,
            cache,
            offset,
        })
    }
}

/// Pieces of a transfer that lie back to back both in the caller's buffer
/// and in one RAM region's host memory: one copy and one dirty-range
/// update for all of them, instead of one per page. The caches they come
/// from must live until [`Span::copy`] (the IOTLB is not changed
/// meanwhile).
pub struct Span {
    host: *mut u8,
    /// Offset in the caller's buffer.
    done: usize,
    len: usize,
    /// The first piece's cache, and the piece's offset in it: the dirty
    /// range is marked through it.
    cache: *mut MemoryRegionCache,
    offset: u64,
}

impl Span {
    /// Append `next` if it continues this span in the buffer, in host
    /// memory and in the same memory region (so also at the next offset of
    /// that region's RAM, which the dirty update needs); otherwise give it
    /// back.
    pub fn extend(&mut self, next: Self) -> Option<Self> {
        // SAFETY: both caches are live (see Span) and were initialized.
        let same_region = unsafe { (*self.cache).mrs.mr == (*next.cache).mrs.mr };
        if same_region
            && next.done == self.done + self.len
            && next.host == self.host.wrapping_add(self.len)
        {
            self.len += next.len;
            None
        } else {
            Some(next)
        }
    }

    /// Copy the span between host RAM and `buf`.
    ///
    /// # Safety
    ///
    /// `buf` is the buffer of the transfer the span was taken from, and the
    /// caches of its pieces are still live.
    pub unsafe fn copy(self, buf: *mut u8, access: Access) -> u32 {
        // SAFETY: the span lies within mapped RAM (HostBlock::span, and
        // extend only appends what follows in the same region) and within
        // the caller's buffer at done (Transfer).
        unsafe {
            match access {
                Access::Read => {
                    std::ptr::copy_nonoverlapping(self.host, buf.add(self.done), self.len)
                }
                Access::Write => {
                    std::ptr::copy_nonoverlapping(buf.add(self.done), self.host, self.len);
                    // Dirty for migration, and invalidates TCG code there:
                    // the region's RAM is contiguous from the first piece.
                    address_space_cache_invalidate(self.cache, self.offset, self.len as u64);
                }
            }
        }
        MEMTX_OK
    }
}

impl Drop for HostBlock {
    fn drop(&mut self) {
        self.unmap();
    }
}
