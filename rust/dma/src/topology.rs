// SPDX-License-Identifier: GPL-2.0-or-later

//! Following the device's memory topology: memory listeners on its
//! bus-master address space (which IOMMU regions, if any, stand in front
//! of it; whether bus mastering is on) and on the address space IOMMUs
//! translate into, and an IOMMU UNMAP notifier on every IOMMU region.

use std::{
    ffi::CStr,
    mem::{offset_of, MaybeUninit},
    ptr::addr_of_mut,
};

use iommu::{flags_perm, perm_flags};
use qemu_dma_core::{Access, TlbEntry};
use system::{
    bindings::{
        address_space_memory, memory_listener_register, memory_listener_unregister,
        memory_region_iommu_attrs_to_index, memory_region_iommu_replay,
        memory_region_register_iommu_notifier, memory_region_unregister_iommu_notifier,
        AddressSpace, IOMMUMemoryRegion, IOMMUMemoryRegionClass, IOMMUNotifier, IOMMUNotifierFlag,
        IOMMUTLBEntry, MemoryListener, MemoryRegion, MemoryRegionSection, IOMMU_NOTIFIER_MAP,
        IOMMU_NOTIFIER_UNMAP,
    },
    MEMTXATTRS_UNSPECIFIED,
};

use crate::{Dma, Mode};

/// Listeners run after QEMU's own (vhost, VFIO use 10): the handle only
/// needs to see the final view.
const LISTENER_PRIORITY: u32 = 20;

/// A memory listener with the handle's callbacks: for the bus-master
/// address space (`BUS`) or for the address space IOMMUs translate into.
pub fn listener<const BUS: bool>(name: &'static CStr) -> MemoryListener {
    // SAFETY: an all-zero MemoryListener is one with no callbacks and
    // unlinked list nodes.
    let mut l: MemoryListener = unsafe { MaybeUninit::zeroed().assume_init() };
    l.begin = Some(rust_begin::<BUS>);
    l.region_add = Some(rust_region_seen::<BUS>);
    l.region_nop = Some(rust_region_seen::<BUS>);
    l.region_del = Some(rust_region_del::<BUS>);
    l.commit = Some(rust_commit::<BUS>);
    l.priority = LISTENER_PRIORITY;
    l.name = name.as_ptr();
    l
}

/// One section of the bus-master view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Section {
    /// Inclusive bus-address range.
    first: u64,
    last: u64,
    mr: *mut MemoryRegion,
    /// Where `first` is in the region.
    offset_in_region: u64,
}

impl Section {
    fn from_c(s: &MemoryRegionSection) -> Self {
        let size = s.size as u128;
        let first = s.offset_within_address_space;
        let last = if size == 0 {
            first
        } else {
            u64::try_from(u128::from(first) + size - 1).unwrap_or(u64::MAX)
        };
        Self {
            first,
            last,
            mr: s.mr,
            offset_in_region: s.offset_within_region,
        }
    }

    fn is_iommu(&self) -> bool {
        // SAFETY: a region of the current view, alive while it is in it;
        // sections name terminal regions, never aliases.
        !self.mr.is_null() && unsafe { (*self.mr).is_iommu }
    }
}

/// An UNMAP notifier on one IOMMU section. The notifier comes first so
/// that QEMU's pointer to it is a pointer to the watch.
#[repr(C)]
pub struct Watch {
    notifier: IOMMUNotifier,
    section: Section,
    /// QEMU accepted the notifier: only then may translations be cached.
    registered: bool,
}

impl Watch {
    fn iommu(&self) -> *mut IOMMUMemoryRegion {
        self.section.mr.cast()
    }

    /// Bus address of the region's address `addr`.
    fn bus_addr(&self, addr: u64) -> u64 {
        addr.wrapping_sub(self.section.offset_in_region)
            .wrapping_add(self.section.first)
    }
}

/// A registered IOMMU region covering an address, to translate with.
#[derive(Clone, Copy)]
pub struct IommuAt {
    iommu: *mut IOMMUMemoryRegion,
    /// Region address minus bus address.
    delta: u64,
}

impl IommuAt {
    /// Ask the IOMMU, as the memory core does on every access: returns the
    /// translation (in bus addresses) and the address space it leads to.
    pub fn translate(self, addr: u64, access: Access) -> (TlbEntry, *mut AddressSpace) {
        let flag = perm_flags(access.into());
        // SAFETY: the region is in the current view (it is only looked up
        // between topology changes, with the BQL held); its class is an
        // IOMMUMemoryRegionClass, whose translate is mandatory.
        let entry: IOMMUTLBEntry = unsafe {
            let klass = (*self.iommu.cast::<qom::bindings::Object>())
                .class
                .cast::<IOMMUMemoryRegionClass>();
            let idx = memory_region_iommu_attrs_to_index(self.iommu, MEMTXATTRS_UNSPECIFIED);
            let translate = (*klass).translate.expect("IOMMU region without translate");
            translate(self.iommu, addr.wrapping_add(self.delta), flag, idx)
        };
        let perm = flags_perm(entry.perm);
        // QEMU's IOMMUs need not align entry.iova (the C virtio-iommu
        // returns the address itself): the block is what the mask says.
        // If the section does not start on a block boundary of the region,
        // the block is not a block in bus addresses: cache one byte at a
        // time rather than guess.
        let region_addr = addr.wrapping_add(self.delta);
        let t = if self.delta & entry.addr_mask == 0 {
            TlbEntry {
                iova: (region_addr & !entry.addr_mask).wrapping_sub(self.delta),
                translated_addr: entry.translated_addr,
                addr_mask: entry.addr_mask,
                perm,
            }
        } else {
            TlbEntry {
                iova: addr,
                translated_addr: (entry.translated_addr & !entry.addr_mask)
                    | (region_addr & entry.addr_mask),
                addr_mask: 0,
                perm,
            }
        };
        (t, entry.target_as)
    }
}

/// What the listeners know.
#[derive(Default)]
pub struct Topology {
    /// The bus-master view being reported between begin and commit.
    pending: Vec<Section>,
    bus_changed: bool,
    target_changed: bool,
    /// Boxed: QEMU holds pointers to the notifiers, which must not move
    /// when the vector grows.
    #[allow(clippy::vec_box)]
    watches: Vec<Box<Watch>>,
}

impl Topology {
    /// The IOMMU region (with an accepted notifier) covering `addr`.
    pub fn iommu_at(&self, addr: u64) -> Option<IommuAt> {
        self.watches
            .iter()
            .find(|w| w.registered && w.section.first <= addr && addr <= w.section.last)
            .map(|w| IommuAt {
                iommu: w.iommu(),
                delta: w.section.offset_in_region.wrapping_sub(w.section.first),
            })
    }
}

/// How a device whose bus-master view is `sections` reaches memory.
fn mode_of(sections: &[Section]) -> Mode {
    if sections.is_empty() {
        Mode::Off
    } else if sections.iter().any(Section::is_iommu) {
        Mode::Iommu
    } else {
        Mode::Direct
    }
}

/// # Safety
///
/// `l` must be the bus-master listener (`BUS`) or the target listener of a
/// live, pinned `Dma`.
unsafe fn handle<'a, const BUS: bool>(l: *mut MemoryListener) -> &'a Dma {
    let offset = if BUS {
        offset_of!(Dma, bus_listener)
    } else {
        offset_of!(Dma, target_listener)
    };
    // SAFETY: the listeners are fields of the pinned Dma; QEMU passes back
    // the pointer it was given at registration, with the callbacks of
    // that listener (listener::<BUS>).
    unsafe { &*l.byte_sub(offset).cast::<Dma>() }
}

unsafe extern "C" fn rust_begin<const BUS: bool>(l: *mut MemoryListener) {
    // SAFETY: QEMU calls back registered listeners only.
    let dma = unsafe { handle::<BUS>(l) };
    let mut state = dma.state.borrow_mut();
    if BUS {
        state.topology.pending.clear();
        state.topology.bus_changed = false;
    } else {
        state.topology.target_changed = false;
    }
}

/// `region_add` and `region_nop`: a section of the new view.
unsafe extern "C" fn rust_region_seen<const BUS: bool>(
    l: *mut MemoryListener,
    s: *mut MemoryRegionSection,
) {
    // SAFETY: as in rust_begin; the section is valid during the call.
    let dma = unsafe { handle::<BUS>(l) };
    let mut state = dma.state.borrow_mut();
    if BUS {
        // SAFETY: see above.
        let section = Section::from_c(unsafe { &*s });
        state.topology.pending.push(section);
        state.topology.bus_changed = true;
    } else {
        state.topology.target_changed = true;
    }
}

unsafe extern "C" fn rust_region_del<const BUS: bool>(
    l: *mut MemoryListener,
    _s: *mut MemoryRegionSection,
) {
    // SAFETY: as in rust_begin.
    let dma = unsafe { handle::<BUS>(l) };
    let mut state = dma.state.borrow_mut();
    if BUS {
        state.topology.bus_changed = true;
    } else {
        state.topology.target_changed = true;
    }
}

/// The view is complete: flush what may be stale, follow IOMMU regions,
/// decide the mode.
unsafe extern "C" fn rust_commit<const BUS: bool>(l: *mut MemoryListener) {
    // SAFETY: as in rust_begin.
    let dma = unsafe { handle::<BUS>(l) };
    if BUS {
        dma.bus_view_changed();
        return;
    }
    let mut state = dma.state.borrow_mut();
    if state.topology.target_changed {
        // Host pointers into remapped RAM would be stale.
        let gone = state.tlb.flush();
        drop(state);
        dma.trace_flush(gone.len());
        drop(gone);
    }
}

unsafe extern "C" fn rust_unmap_notify(n: *mut IOMMUNotifier, entry: *mut IOMMUTLBEntry) {
    // SAFETY: n is the first field of a Watch whose opaque is the live
    // Dma that registered it; the entry is valid during the call.
    let (watch, dma, entry) = unsafe {
        let watch = &*n.cast::<Watch>();
        (watch, &*(*n).opaque.cast::<Dma>(), &*entry)
    };
    let first = watch.bus_addr(entry.iova);
    let last = first.saturating_add(entry.addr_mask);
    let (gone, maps) = {
        let mut state = dma.state.borrow_mut();
        state.stats.unmap_notifications += 1;
        (
            state.tlb.invalidate(first, last),
            state.maps.take_overlapping(first, last),
        )
    };
    dma.trace_invalidate(first, last, gone.len());
    drop(gone);
    dma.invalidate_maps(&maps);
}

fn init_notifier(watch: &mut Watch, flags: IOMMUNotifierFlag, dma: &Dma) {
    let (start, end) = (
        watch.section.offset_in_region,
        watch
            .section
            .offset_in_region
            .saturating_add(watch.section.last - watch.section.first),
    );
    let iommu = watch.iommu();
    let n = &mut watch.notifier;
    n.notify = Some(rust_unmap_notify);
    n.notifier_flags = flags;
    n.start = start;
    n.end = end;
    // SAFETY: the region is live (in the view being committed).
    n.iommu_idx = unsafe { memory_region_iommu_attrs_to_index(iommu, MEMTXATTRS_UNSPECIFIED) };
    n.opaque = std::ptr::from_ref(dma).cast_mut().cast();
}

impl Dma {
    /// Register the listeners once the device has a bus-master address
    /// space (from machine-ready on for cold-plugged devices). Registration
    /// replays the current view, so the mode is known on return.
    pub fn ensure_registered(&self) {
        if self.registered.get() {
            return;
        }
        let space = self.bus_master_as();
        // SAFETY: reads a field of the live device; a NULL root means the
        // PCI core has not initialized the address space yet.
        if unsafe { (*space).root.is_null() } {
            return;
        }
        self.registered.set(true);
        // SAFETY: the listeners live as long as the pinned handle, which
        // unregisters them on drop; both address spaces outlive it.
        unsafe {
            memory_listener_register(self.bus_listener.get(), space);
            memory_listener_register(
                self.target_listener.get(),
                addr_of_mut!(address_space_memory),
            );
        }
    }

    /// Unregister the listeners (QEMU then reports every section as
    /// removed: the view becomes empty, the IOMMU notifiers go) and any
    /// notifier left. Takes `&self`: the listeners call back into the
    /// handle meanwhile.
    pub fn unregister(&self) {
        if !self.registered.get() {
            return;
        }
        // SAFETY: registered by ensure_registered.
        unsafe {
            memory_listener_unregister(self.bus_listener.get());
            memory_listener_unregister(self.target_listener.get());
        }
        let watches = std::mem::take(&mut self.state.borrow_mut().topology.watches);
        for mut w in watches {
            unwatch(&mut w);
        }
        self.registered.set(false);
    }

    /// Commit of the bus-master view.
    fn bus_view_changed(&self) {
        let (old_mode, new_sections, old_watches) = {
            let mut state = self.state.borrow_mut();
            if !state.topology.bus_changed {
                return;
            }
            let t = &mut state.topology;
            let sections = std::mem::take(&mut t.pending);
            let watches = std::mem::take(&mut t.watches);
            (state.mode, sections, watches)
        };

        // Follow the IOMMU sections: keep the watches of sections that
        // stay, drop the others, watch the new ones. Registration calls
        // the IOMMU (notify_flag_changed), so no borrow is held.
        let (kept, dropped): (Vec<_>, Vec<_>) = old_watches
            .into_iter()
            .partition(|w| new_sections.contains(&w.section));
        let iommus_changed = !dropped.is_empty();
        for mut w in dropped {
            unwatch(&mut w);
        }
        let mut watches = kept;
        let mut added = false;
        for section in new_sections.iter().filter(|s| s.is_iommu()) {
            if watches.iter().any(|w| w.section == *section) {
                continue;
            }
            added = true;
            watches.push(self.watch(*section));
        }

        let gone_maps;
        let gone_blocks;
        {
            let mut state = self.state.borrow_mut();
            state.topology.watches = watches;
            let mode = mode_of(&new_sections);
            state.mode = mode;
            // Whatever was cached may point where the device can no longer
            // go; persistent maps lose their guarantee when the device
            // changes modes or IOMMU regions.
            gone_blocks = state.tlb.flush();
            gone_maps = if mode != old_mode || iommus_changed || added {
                state.maps.take_all()
            } else {
                Vec::new()
            };
        }
        if !gone_blocks.is_empty() {
            self.trace_flush(gone_blocks.len());
        }
        drop(gone_blocks);
        let mode = self.state.borrow().mode;
        if mode != old_mode {
            self.trace_mode(mode);
        }
        self.invalidate_maps(&gone_maps);
    }

    fn watch(&self, section: Section) -> Box<Watch> {
        let mut w = Box::new(Watch {
            // SAFETY: an all-zero notifier is unlinked and has no callback
            // until init_notifier fills it in.
            notifier: unsafe { MaybeUninit::zeroed().assume_init() },
            section,
            registered: false,
        });
        init_notifier(&mut w, IOMMU_NOTIFIER_UNMAP, self);
        let mut err = std::ptr::null_mut();
        // SAFETY: the notifier is boxed (stable address) and unregistered
        // before the box is dropped (unwatch).
        let rc =
            unsafe { memory_region_register_iommu_notifier(section.mr, &mut w.notifier, &mut err) };
        if rc == 0 {
            w.registered = true;
        } else {
            // The IOMMU refused: the device still works, uncached.
            // SAFETY: err was set by the failed registration.
            unsafe {
                util::bindings::error_free(err.cast());
            }
        }
        w
    }

    /// Replay the current mappings of every IOMMU region in front of the
    /// device to a temporary MAP notifier; returns the MAP events seen.
    pub fn replay_count(&self) -> u32 {
        self.ensure_registered();
        let sections: Vec<Section> = {
            let state = self.state.borrow();
            state.topology.watches.iter().map(|w| w.section).collect()
        };
        let mut count = 0u32;
        for section in sections {
            let mut w = Watch {
                // SAFETY: as in watch().
                notifier: unsafe { MaybeUninit::zeroed().assume_init() },
                section,
                registered: false,
            };
            init_notifier(&mut w, IOMMU_NOTIFIER_MAP, self);
            w.notifier.notify = Some(count_map);
            w.notifier.opaque = std::ptr::from_mut(&mut count).cast();
            let mut err = std::ptr::null_mut();
            // SAFETY: the notifier lives on this stack frame and is
            // unregistered before it ends.
            unsafe {
                if memory_region_register_iommu_notifier(section.mr, &mut w.notifier, &mut err) != 0
                {
                    util::bindings::error_free(err.cast());
                    continue;
                }
                memory_region_iommu_replay(section.mr.cast(), &mut w.notifier);
                memory_region_unregister_iommu_notifier(section.mr, &mut w.notifier);
            }
        }
        count
    }
}

unsafe extern "C" fn count_map(n: *mut IOMMUNotifier, _entry: *mut IOMMUTLBEntry) {
    // SAFETY: replay_count's notifier, whose opaque is its counter.
    unsafe {
        let count = &mut *(*n).opaque.cast::<u32>();
        *count = count.saturating_add(1);
    }
}

fn unwatch(w: &mut Watch) {
    if w.registered {
        // SAFETY: registered on this region by Dma::watch.
        unsafe {
            memory_region_unregister_iommu_notifier(w.section.mr, &mut w.notifier);
        }
        w.registered = false;
    }
}
