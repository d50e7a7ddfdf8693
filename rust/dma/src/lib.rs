// SPDX-License-Identifier: GPL-2.0-or-later

#![doc = include_str!("../README.md")]

mod host;
mod topology;
mod trace_points;

use std::{
    cell::{Cell, RefCell, UnsafeCell},
    marker::PhantomPinned,
    pin::Pin,
    ptr::NonNull,
    sync::atomic::{fence, Ordering},
};

use pci::{PCIDevice, PCIDeviceMethods};
pub use qemu_dma_core::Access;
use qemu_dma_core::{Iotlb, MapTracker, Perm, TlbEntry, Transfer, PAGE_MASK, PAGE_SIZE};
use system::{
    bindings::{
        address_space_map, address_space_rw, address_space_unmap, AddressSpace, MemoryListener,
        MEMTX_DECODE_ERROR, MEMTX_ERROR, MEMTX_OK,
    },
    MEMTXATTRS_UNSPECIFIED,
};

use crate::{
    host::{HostBlock, Span},
    topology::Topology,
};

/// A failed transaction: `MemTxResult` bits (`MEMTX_ERROR`,
/// `MEMTX_DECODE_ERROR`, `MEMTX_ACCESS_ERROR`), never `MEMTX_OK`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemTxError(pub u32);

pub type DmaResult<T = ()> = Result<T, MemTxError>;

fn result(bits: u32) -> DmaResult {
    if bits == MEMTX_OK {
        Ok(())
    } else {
        Err(MemTxError(bits))
    }
}

/// How the device reaches memory, as last decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Bus addresses are guest-physical addresses.
    Direct,
    /// An IOMMU translates bus addresses.
    Iommu,
    /// Bus mastering is off (or the device has no bus-master address
    /// space yet): nothing is reachable.
    Off,
}

/// Counters, for tests, benchmarks and introspection
/// ([`Dma::stats_json`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Pages served from the IOTLB.
    pub hits: u64,
    /// Pages the IOTLB did not have and cached (in both modes).
    pub misses: u64,
    /// IOMMU UNMAP notifications received.
    pub unmap_notifications: u64,
    /// Translations asked of the IOMMU (misses in IOMMU mode, and pages an
    /// IOMMU refused).
    pub translations: u64,
    /// Persistent-map invalidation callbacks fired.
    pub invalidations: u64,
}

/// Entries in the IOTLB: 2^9 pages = 2 MiB of working set.
const IOTLB_BITS: u32 = 9;

/// Without an IOMMU, a transfer longer than this goes straight to QEMU's
/// path: the copy dominates it, and `address_space_rw` copies a range of
/// contiguous RAM at once (and marks it dirty once) where the cache would
/// go a page at a time. Up to two pages, the cache wins.
const DIRECT_CACHED_MAX: usize = 2 * PAGE_SIZE as usize;

/// Everything that changes, behind one BQL cell. It is never borrowed
/// while QEMU is called with something that may call back into the
/// handle (an MMIO access, an IOMMU `translate`, a notifier registration).
struct State {
    mode: Mode,
    topology: Topology,
    tlb: Iotlb<HostBlock>,
    maps: MapTracker,
    callbacks: Vec<(u64, Box<dyn FnMut()>)>,
    stats: Stats,
}

/// The DMA handle of one PCI device, created at realize and dropped when
/// the device goes away. It is pinned: QEMU holds pointers to its memory
/// listeners and IOMMU notifiers.
pub struct Dma {
    /// Listens to the device's bus-master address space: bus mastering,
    /// IOMMU regions appearing or switching to bypass, hot-plug.
    bus_listener: UnsafeCell<MemoryListener>,
    /// Listens to the address space IOMMUs translate into (system memory):
    /// a remapped RAM block invalidates cached host pointers.
    target_listener: UnsafeCell<MemoryListener>,
    dev: NonNull<PCIDevice>,
    /// The listeners are registered lazily: a cold-plugged device gets its
    /// bus-master address space only when the machine is ready.
    registered: Cell<bool>,
    /// A plain `RefCell`: every access already runs with the BQL held (a
    /// `BqlRefCell` would check that again, twice per borrow, on the hot
    /// path; `rw` asserts it once in debug builds).
    state: RefCell<State>,
    _pinned: PhantomPinned,
}

// SAFETY: the handle is only used with the BQL held (asserted by the
// access paths in debug builds), like the device that owns it; QEMU calls
// its listeners and notifiers with the BQL held too.
unsafe impl Send for Dma {}
unsafe impl Sync for Dma {}

/// A buffer kept mapped by [`Dma::map`]. Give it back with [`Dma::unmap`]
/// before the handle goes: the handle cannot release it for its owner.
#[derive(Debug)]
pub struct DmaMap {
    id: u64,
    /// Bus address and length actually mapped (maybe shorter than asked).
    addr: u64,
    len: usize,
    host: NonNull<u8>,
    access: Access,
}

impl DmaMap {
    pub const fn addr(&self) -> u64 {
        self.addr
    }

    pub const fn len(&self) -> usize {
        self.len
    }

    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Dma {
    /// The handle of `dev`, which must outlive it (a device field dropped
    /// at unrealize or finalize).
    pub fn new(dev: &PCIDevice) -> Pin<Box<Self>> {
        Box::pin(Self {
            bus_listener: UnsafeCell::new(topology::listener::<true>(c"dma-bus-master")),
            target_listener: UnsafeCell::new(topology::listener::<false>(c"dma-target")),
            dev: NonNull::from(dev),
            registered: Cell::new(false),
            state: RefCell::new(State {
                mode: Mode::Off,
                topology: Topology::default(),
                tlb: Iotlb::new(IOTLB_BITS),
                maps: MapTracker::new(),
                callbacks: Vec::new(),
                stats: Stats::default(),
            }),
            _pinned: PhantomPinned,
        })
    }

    fn bus_master_as(&self) -> *mut AddressSpace {
        // SAFETY: the device outlives its handle (Dma::new).
        unsafe { self.dev.as_ref() }.bus_master_as()
    }

    /// How the device reaches memory now.
    pub fn mode(&self) -> Mode {
        self.ensure_registered();
        self.state.borrow().mode
    }

    pub fn stats(&self) -> Stats {
        self.state.borrow().stats
    }

    /// The mode and [`Stats`] as a JSON object, for a device's read-only
    /// QOM property (`x-dma-test`'s `dma-stats`): `{"mode", "hits",
    /// "misses", "translations", "unmap-notifications",
    /// "invalidated-maps"}`, the mode being `"direct"`, `"iommu"` or
    /// `"off"`.
    pub fn stats_json(&self) -> String {
        let mode = match self.mode() {
            Mode::Direct => "direct",
            Mode::Iommu => "iommu",
            Mode::Off => "off",
        };
        let s = self.stats();
        format!(
            "{{\"mode\": \"{mode}\", \"hits\": {}, \"misses\": {}, \"translations\": {}, \
             \"unmap-notifications\": {}, \"invalidated-maps\": {}}}",
            s.hits, s.misses, s.translations, s.unmap_notifications, s.invalidations
        )
    }

    /// `pci_dma_read`: fill `buf` from bus address `addr`.
    #[inline]
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> DmaResult {
        self.rw(addr, buf.as_mut_ptr(), buf.len(), Access::Read)
    }

    /// `pci_dma_write`: copy `buf` to bus address `addr`.
    #[inline]
    pub fn write(&self, addr: u64, buf: &[u8]) -> DmaResult {
        // The buffer is only read from when the access is a write.
        self.rw(addr, buf.as_ptr().cast_mut(), buf.len(), Access::Write)
    }

    pub fn ldl_le(&self, addr: u64) -> DmaResult<u32> {
        let mut b = [0; 4];
        self.read(addr, &mut b).map(|()| u32::from_le_bytes(b))
    }

    pub fn ldq_le(&self, addr: u64) -> DmaResult<u64> {
        let mut b = [0; 8];
        self.read(addr, &mut b).map(|()| u64::from_le_bytes(b))
    }

    pub fn stl_le(&self, addr: u64, val: u32) -> DmaResult {
        self.write(addr, &val.to_le_bytes())
    }

    pub fn stq_le(&self, addr: u64, val: u64) -> DmaResult {
        self.write(addr, &val.to_le_bytes())
    }

    /// One access. As `pci_dma_rw`: a full barrier orders it after the
    /// device's earlier accesses, a failed piece does not stop the rest,
    /// and a read fills what failed with zeroes.
    #[inline]
    fn rw(&self, addr: u64, buf: *mut u8, len: usize, access: Access) -> DmaResult {
        debug_assert!(bql::is_locked());
        self.ensure_registered();
        fence(Ordering::SeqCst);
        let Some(mut t) = Transfer::new(addr, len) else {
            return Err(MemTxError(MEMTX_DECODE_ERROR));
        };
        if len > DIRECT_CACHED_MAX && self.state.borrow().mode == Mode::Direct {
            // SAFETY: buf is valid for len bytes (read/write).
            return result(unsafe {
                self.slow_piece(self.bus_master_as(), addr, buf, len, access)
            });
        }
        let mut bits = MEMTX_OK;
        while !t.is_done() {
            bits |= self.piece(&mut t, buf, access);
        }
        result(bits)
    }

    /// Move the next pieces of `t`: every page in a row the IOTLB has, as
    /// few copies as their host memory allows (pages whose RAM is
    /// contiguous are one copy and one dirty update), then, if the next
    /// page missed, that piece after filling it.
    #[inline]
    fn piece(&self, t: &mut Transfer, buf: *mut u8, access: Access) -> u32 {
        let mut state_ref = self.state.borrow_mut();
        let mode = state_ref.mode;
        if mode == Mode::Off {
            // Bus mastering is off: QEMU's path fails the rest as
            // pci_dma_rw would.
            drop(state_ref);
            let (addr, off, n) = t.take(u64::MAX);
            // SAFETY: off + n is within the caller's buffer (Transfer).
            return unsafe { self.slow_piece(self.bus_master_as(), addr, buf.add(off), n, access) };
        }
        // The spans point into IOTLB entries' caches: the state stays
        // borrowed (nothing is evicted) until they are copied.
        let mut run: Option<Span> = None;
        let mut bits = MEMTX_OK;
        let state = &mut *state_ref;
        while !t.is_done() {
            let Some(hit) = state.tlb.lookup(t.addr, access) else {
                break;
            };
            state.stats.hits += 1;
            let (target, room) = (hit.target, hit.room);
            let Some(span) = hit.payload.span(target, room, t, access) else {
                // Translated, but not RAM (or not mapped yet): QEMU's path
                // on the target.
                let target_as = hit.payload.target_as();
                if let Some(r) = run.take() {
                    // SAFETY: taken from t, whose caches are still live.
                    bits |= unsafe { r.copy(buf, access) };
                }
                drop(state_ref);
                let (_, off, n) = t.take(room);
                // SAFETY: off + n is within the caller's buffer (Transfer).
                return bits
                    | unsafe { self.slow_piece(target_as, target, buf.add(off), n, access) };
            };
            match run.as_mut() {
                None => run = Some(span),
                Some(r) => {
                    if let Some(next) = r.extend(span) {
                        let done = std::mem::replace(r, next);
                        // SAFETY: as above.
                        bits |= unsafe { done.copy(buf, access) };
                    }
                }
            }
        }
        if let Some(r) = run.take() {
            // SAFETY: as above.
            bits |= unsafe { r.copy(buf, access) };
        }
        drop(state_ref);
        if t.is_done() {
            return bits;
        }
        bits | match self.fill(t.addr, access, mode) {
            Fill::Cached => MEMTX_OK,
            Fill::Uncached(room) => {
                let (addr, off, n) = t.take(room);
                // SAFETY: as above.
                unsafe { self.slow_piece(self.bus_master_as(), addr, buf.add(off), n, access) }
            }
            Fill::Fault(room) => {
                let (_, off, n) = t.take(room);
                if access == Access::Read {
                    // SAFETY: as above.
                    unsafe {
                        buf.add(off).write_bytes(0, n);
                    }
                }
                MEMTX_DECODE_ERROR
            }
        }
    }

    /// Translate `addr` and cache it; on `Cached` the next lookup hits.
    fn fill(&self, addr: u64, access: Access, mode: Mode) -> Fill {
        let page_room = PAGE_MASK - (addr & PAGE_MASK) + 1;
        let (translation, target_as) = match mode {
            Mode::Direct => (
                TlbEntry {
                    iova: addr & !PAGE_MASK,
                    translated_addr: addr & !PAGE_MASK,
                    addr_mask: PAGE_MASK,
                    perm: Perm::RW,
                },
                self.bus_master_as(),
            ),
            _ => {
                let Some(iommu) = self.state.borrow().topology.iommu_at(addr) else {
                    // Outside any IOMMU region, or its notifier was refused
                    // so nothing could be cached safely.
                    return Fill::Uncached(page_room);
                };
                self.state.borrow_mut().stats.translations += 1;
                // The IOMMU may report a fault (our device writes its
                // event queue): no borrow is held.
                let (t, target_as) = iommu.translate(addr, access);
                if !t.perm.allows(access.into()) {
                    let mask = t.addr_mask.min(PAGE_MASK);
                    return Fill::Fault(mask - (addr & mask) + 1);
                }
                (t, target_as)
            }
        };
        let (page, _, target) = Iotlb::<HostBlock>::block_of(&translation, addr);
        self.trace_fill(page, target, translation.perm);
        let block = HostBlock::new(target_as, target, translation.addr_mask.min(PAGE_MASK));
        let replaced = {
            let mut state = self.state.borrow_mut();
            state.stats.misses += 1;
            state.tlb.insert(&translation, addr, block)
        };
        drop(replaced);
        Fill::Cached
    }

    /// `address_space_rw`, the way `pci_dma_rw` ends.
    ///
    /// # Safety
    ///
    /// `buf` must be valid for `len` bytes (written to for reads).
    unsafe fn slow_piece(
        &self,
        space: *mut AddressSpace,
        addr: u64,
        buf: *mut u8,
        len: usize,
        access: Access,
    ) -> u32 {
        // SAFETY: guaranteed by the caller; the address space outlives the
        // device (system memory, or the device's own bus-master space).
        unsafe {
            address_space_rw(
                space,
                addr,
                MEMTXATTRS_UNSPECIFIED,
                buf.cast(),
                len as u64,
                access == Access::Write,
            )
        }
    }

    /// `dma_memory_map`: map `len` bytes at `addr` for `access` and keep
    /// them mapped until [`Dma::unmap`]. `on_invalidate` runs (once, with
    /// the BQL held) if the IOMMU unmaps any of it or the device's address
    /// space changes; from then on the map refuses accesses. The map may
    /// be shorter than asked, as `dma_memory_map`'s.
    pub fn map(
        &self,
        addr: u64,
        len: usize,
        access: Access,
        on_invalidate: Box<dyn FnMut()>,
    ) -> DmaResult<DmaMap> {
        self.ensure_registered();
        let mode = self.state.borrow().mode;
        let mut t = Transfer::new(addr, len).ok_or(MemTxError(MEMTX_DECODE_ERROR))?;
        if mode == Mode::Off || len == 0 {
            return Err(MemTxError(MEMTX_DECODE_ERROR));
        }
        // Check every page with the IOMMU first: address_space_map would
        // hand out a bounce buffer for an unmapped IOVA.
        if mode == Mode::Iommu {
            while !t.is_done() {
                let room = match self.fill(t.addr, access, mode) {
                    Fill::Cached | Fill::Uncached(_) => PAGE_MASK - (t.addr & PAGE_MASK) + 1,
                    Fill::Fault(_) => return Err(MemTxError(MEMTX_DECODE_ERROR)),
                };
                t.take(room);
            }
        }
        let mut plen = len as u64;
        // SAFETY: the bus-master address space is initialized (the mode is
        // not Off); QEMU returns NULL or a pointer valid for plen bytes.
        let host = unsafe {
            address_space_map(
                self.bus_master_as(),
                addr,
                &mut plen,
                access == Access::Write,
                MEMTXATTRS_UNSPECIFIED,
            )
        };
        let host = NonNull::new(host.cast::<u8>()).ok_or(MemTxError(MEMTX_ERROR))?;
        let len = usize::try_from(plen).unwrap_or(len).min(len);
        let mut state = self.state.borrow_mut();
        let last = addr.saturating_add(plen.saturating_sub(1));
        let id = state.maps.add(addr, last);
        state.callbacks.push((id, on_invalidate));
        Ok(DmaMap {
            id,
            addr,
            len,
            host,
            access,
        })
    }

    /// Where `len` bytes at `offset` of `map` are in host memory, if the
    /// map is still live, was made for `access` and holds them.
    fn map_range(
        &self,
        map: &DmaMap,
        offset: usize,
        len: usize,
        access: Access,
    ) -> DmaResult<*mut u8> {
        let fits = offset.checked_add(len).is_some_and(|end| end <= map.len);
        if !self.state.borrow().maps.is_live(map.id) || map.access != access || !fits {
            return Err(MemTxError(MEMTX_DECODE_ERROR));
        }
        // SAFETY: offset <= map.len, within the mapped host range.
        Ok(unsafe { map.host.as_ptr().add(offset) })
    }

    /// Copy `data` into a map made for writing, at `offset`; fails once
    /// the map was invalidated.
    pub fn map_write(&self, map: &DmaMap, offset: usize, data: &[u8]) -> DmaResult {
        let host = self.map_range(map, offset, data.len(), Access::Write)?;
        // SAFETY: the host range stays mapped until unmap and holds
        // data.len() bytes from host (map_range).
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), host, data.len());
        }
        Ok(())
    }

    /// Copy from a map made for reading, at `offset`; fails once the map
    /// was invalidated.
    pub fn map_read(&self, map: &DmaMap, offset: usize, out: &mut [u8]) -> DmaResult {
        let host = self.map_range(map, offset, out.len(), Access::Read)?;
        // SAFETY: as in map_write.
        unsafe {
            std::ptr::copy_nonoverlapping(host, out.as_mut_ptr(), out.len());
        }
        Ok(())
    }

    /// `dma_memory_unmap`: release a map (the whole of it counts as
    /// accessed, so written pages are marked dirty).
    pub fn unmap(&self, map: DmaMap) {
        let callback = {
            let mut state = self.state.borrow_mut();
            state.maps.remove(map.id);
            let i = state.callbacks.iter().position(|(id, _)| *id == map.id);
            i.map(|i| state.callbacks.swap_remove(i))
        };
        drop(callback);
        let write = map.access == Access::Write;
        // SAFETY: host and len are what address_space_map returned for the
        // bus-master address space.
        unsafe {
            address_space_unmap(
                self.bus_master_as(),
                map.host.as_ptr().cast(),
                map.len as u64,
                write,
                if write { map.len as u64 } else { 0 },
            );
        }
    }

    /// Fire the invalidation callbacks of `ids` (no borrow held: a
    /// callback may use the handle).
    fn invalidate_maps(&self, ids: &[u64]) {
        for id in ids {
            let callback = {
                let mut state = self.state.borrow_mut();
                let i = state.callbacks.iter().position(|(i, _)| i == id);
                i.map(|i| state.callbacks.swap_remove(i))
            };
            if let Some((_, mut callback)) = callback {
                self.state.borrow_mut().stats.invalidations += 1;
                self.trace_map_invalidated(*id);
                callback();
            }
        }
    }
}

enum Fill {
    /// The page is in the IOTLB now.
    Cached,
    /// Not cacheable: QEMU's path for (at most) this many bytes.
    Uncached(u64),
    /// The IOMMU refused the access for (at most) this many bytes.
    Fault(u64),
}

impl Drop for Dma {
    fn drop(&mut self) {
        // Shared from here on: unregistering calls the listeners, which
        // reach the handle through QEMU's pointers.
        let this: &Self = self;
        this.unregister();
        let (callbacks, blocks) = {
            let mut state = this.state.borrow_mut();
            (std::mem::take(&mut state.callbacks), state.tlb.flush())
        };
        // The cached host pages give their region references back.
        drop((callbacks, blocks));
    }
}
