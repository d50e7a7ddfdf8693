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
pub struct HostBlock {
    target_as: *mut AddressSpace,
    /// First target address of the block.
    start: u64,
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
    /// Map the block `[start, start + mask]` of `target_as` for `access`.
    pub fn new(target_as: *mut AddressSpace, start: u64, mask: u64, access: Access) -> Self {
        let mut block = Self {
            target_as,
            start,
            cache: None,
            len: 0,
            writable: false,
        };
        block.map(mask + 1, access);
        block
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

    /// Copy the next piece of `t` (which goes to `target`, with `room`
    /// bytes of the block left from there) between host RAM and `buf`.
    /// `None` if the block is not directly accessible for `access`.
    pub fn copy(
        &mut self,
        target: u64,
        room: u64,
        t: &mut Transfer,
        buf: *mut u8,
        access: Access,
    ) -> Option<u32> {
        if access == Access::Write && !self.writable && self.cache.is_some() {
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
        // SAFETY: cache.ptr maps self.len bytes from start; the piece lies
        // within [offset, offset + room) of it, and within the caller's
        // buffer at done (Transfer).
        unsafe {
            let host = cache.ptr.add(offset as usize);
            match access {
                Access::Read => std::ptr::copy_nonoverlapping(host, buf.add(done), n),
                Access::Write => {
                    std::ptr::copy_nonoverlapping(buf.add(done), host, n);
                    // Dirty for migration, and invalidates TCG code there.
                    address_space_cache_invalidate(cache, offset, n as u64);
                }
            }
        }
        Some(MEMTX_OK)
    }
}

impl Drop for HostBlock {
    fn drop(&mut self) {
        self.unmap();
    }
}
