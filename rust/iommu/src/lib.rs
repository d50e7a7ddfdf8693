// SPDX-License-Identifier: GPL-2.0-or-later

//! IOMMU memory regions (`TYPE_IOMMU_MEMORY_REGION`) whose translate,
//! replay and notifier callbacks are Rust methods, and the per-endpoint
//! address space an IOMMU gives a device: an IOMMU region and a bypass alias
//! of system memory, one of them enabled at a time.

use std::{
    ffi::{c_int, c_void, CStr, CString},
    marker::PhantomData,
    mem::size_of,
    ptr::{addr_of_mut, NonNull},
};

use qom::bindings::{Object, ObjectClass, TypeInfo};
use system::bindings::{
    self, address_space_init, address_space_memory, get_system_memory, hwaddr,
    memory_region_add_subregion_overlap, memory_region_init, memory_region_init_alias,
    memory_region_init_iommu, memory_region_notify_iommu, memory_region_notify_iommu_one,
    memory_region_set_enabled, memory_region_transaction_begin, memory_region_transaction_commit,
    AddressSpace, IOMMUMemoryRegion, IOMMUMemoryRegionClass, IOMMUNotifier, IOMMUTLBEntry,
    IOMMUTLBEvent, MemoryRegion,
};
pub use system::bindings::{
    IOMMUAccessFlags, IOMMUNotifierFlag, IOMMU_NONE, IOMMU_NOTIFIER_DEVIOTLB_UNMAP,
    IOMMU_NOTIFIER_MAP, IOMMU_NOTIFIER_NONE, IOMMU_NOTIFIER_UNMAP, IOMMU_RO, IOMMU_RW, IOMMU_WO,
};
use util::Error;

mod rcu;
pub use rcu::{RcuArc, Reader};

pub use qemu_iommu_core::{Perm, TlbEntry};

/// QEMU's `IOMMUAccessFlags` for `perm`.
pub const fn perm_flags(perm: Perm) -> IOMMUAccessFlags {
    (if perm.read { IOMMU_RO } else { 0 }) | (if perm.write { IOMMU_WO } else { 0 })
}

/// The rights QEMU's `IOMMUAccessFlags` `flags` stand for.
pub const fn flags_perm(flags: IOMMUAccessFlags) -> Perm {
    Perm {
        read: flags & IOMMU_RO != 0,
        write: flags & IOMMU_WO != 0,
    }
}

/// `entry` as QEMU's `IOMMUTLBEntry`, into system memory.
fn tlb_entry_to_c(entry: TlbEntry) -> IOMMUTLBEntry {
    IOMMUTLBEntry {
        target_as: addr_of_mut!(address_space_memory),
        iova: entry.iova,
        translated_addr: entry.translated_addr,
        addr_mask: entry.addr_mask,
        perm: perm_flags(entry.perm),
        pasid: 0,
    }
}

/// The IOMMU behind a family of IOMMU regions. Each region serves one
/// endpoint, named by the `u32` the region was created with.
pub trait IommuRegionOwner: Sync + Sized {
    /// Translate an access of `endpoint` to `addr` that needs rights `need`
    /// (none when the caller only asks where `addr` goes).
    /// `reader` proves the caller's context (the BQL or an RCU read-side
    /// section), in which [`RcuArc`] snapshots can be read without a lock.
    fn translate(&self, endpoint: u32, addr: u64, need: Perm, reader: &Reader) -> TlbEntry;

    /// The current mappings of `endpoint`, to replay to a new notifier.
    fn mappings(&self, endpoint: u32) -> Vec<TlbEntry>;

    /// A notifier was added to or removed from the region of `endpoint`:
    /// refuse flags the IOMMU cannot honour.
    fn notify_flag_changed(
        &self,
        endpoint: u32,
        old: IOMMUNotifierFlag,
        new: IOMMUNotifierFlag,
    ) -> util::Result<()>;
}

/// The QOM instance of an IOMMU region: the C region, then who to ask.
#[repr(C)]
struct IommuRegion {
    mr: IOMMUMemoryRegion,
    owner: *const c_void,
    endpoint: u32,
}

/// # Safety
///
/// `iommu` must be an `IommuRegion` created by `EndpointAddressSpace::new`
/// for an owner of type `T`, which outlives it.
unsafe fn region<'a, T>(iommu: *mut IOMMUMemoryRegion) -> (&'a T, u32) {
    // SAFETY: guaranteed by the caller; the owner pointer is never null.
    unsafe {
        let r = &*iommu.cast::<IommuRegion>();
        (&*r.owner.cast::<T>(), r.endpoint)
    }
}

unsafe extern "C" fn rust_translate<T: IommuRegionOwner>(
    iommu: *mut IOMMUMemoryRegion,
    addr: hwaddr,
    flag: IOMMUAccessFlags,
    _iommu_idx: c_int,
) -> IOMMUTLBEntry {
    // SAFETY: QEMU calls translate on regions of the type registered for T,
    // holding the BQL or inside an RCU read-side critical section
    // (IOMMUMemoryRegionClass::translate's contract) until it returns.
    let ((owner, endpoint), reader) = unsafe { (region::<T>(iommu), Reader::new()) };
    tlb_entry_to_c(owner.translate(endpoint, addr, flags_perm(flag), &reader))
}

unsafe extern "C" fn rust_replay<T: IommuRegionOwner>(
    iommu: *mut IOMMUMemoryRegion,
    notifier: *mut IOMMUNotifier,
) {
    // SAFETY: as for rust_translate.
    let (owner, endpoint) = unsafe { region::<T>(iommu) };
    for entry in owner.mappings(endpoint) {
        let event = IOMMUTLBEvent {
            type_: IOMMU_NOTIFIER_MAP,
            entry: tlb_entry_to_c(entry),
        };
        // SAFETY: the notifier is registered on this region; the function
        // filters by its range and flags.
        unsafe {
            memory_region_notify_iommu_one(notifier, &event);
        }
    }
}

unsafe extern "C" fn rust_notify_flag_changed<T: IommuRegionOwner>(
    iommu: *mut IOMMUMemoryRegion,
    old: IOMMUNotifierFlag,
    new: IOMMUNotifierFlag,
    errp: *mut *mut bindings::Error,
) -> c_int {
    // SAFETY: as for rust_translate.
    let (owner, endpoint) = unsafe { region::<T>(iommu) };
    let result = owner.notify_flag_changed(endpoint, old, new);
    // SAFETY: errp comes from the memory core.
    match unsafe { Error::ok_or_propagate(result, errp.cast()) } {
        Some(()) => 0,
        None => -libc::EINVAL,
    }
}

unsafe extern "C" fn rust_region_class_init<T: IommuRegionOwner>(
    klass: *mut ObjectClass,
    _data: *const c_void,
) {
    // SAFETY: QOM calls class_init with the class of a type whose parent
    // is TYPE_IOMMU_MEMORY_REGION.
    let imrc = unsafe { &mut *klass.cast::<IOMMUMemoryRegionClass>() };
    imrc.translate = Some(rust_translate::<T>);
    imrc.replay = Some(rust_replay::<T>);
    imrc.notify_flag_changed = Some(rust_notify_flag_changed::<T>);
}

/// The QOM type of the IOMMU regions of a `T`, registered once under a
/// name of its own with [`register_iommu_region_type!`].
pub struct IommuRegionType<T>(PhantomData<T>);

/// Register the QOM type `$name` (a `&'static CStr`) of the IOMMU regions
/// of `$owner`, an [`IommuRegionOwner`], at QOM module init; once per
/// owner type, in the owner's crate.
#[macro_export]
macro_rules! register_iommu_region_type {
    ($owner:ty, $name:expr) => {
        const _: () = {
            const INFO: ::qom::bindings::TypeInfo =
                $crate::IommuRegionType::<$owner>::type_info($name);
            // SAFETY: called once at QOM module init, with a static
            // TypeInfo whose parent is TYPE_IOMMU_MEMORY_REGION and whose
            // callbacks expect the owner's regions.
            ::util::module_init! {
                MODULE_INIT_QOM => unsafe {
                    ::qom::type_register_static(&INFO);
                }
            }
        };
    };
}

impl<T: IommuRegionOwner> IommuRegionType<T> {
    pub const fn type_info(name: &'static CStr) -> TypeInfo {
        TypeInfo {
            name: name.as_ptr(),
            parent: bindings::TYPE_IOMMU_MEMORY_REGION.as_ptr().cast(),
            instance_size: size_of::<IommuRegion>(),
            instance_align: std::mem::align_of::<IommuRegion>(),
            instance_init: None,
            instance_post_init: None,
            instance_finalize: None,
            abstract_: false,
            class_size: size_of::<IOMMUMemoryRegionClass>(),
            class_init: Some(rust_region_class_init::<T>),
            class_base_init: None,
            class_data: std::ptr::null(),
            interfaces: std::ptr::null(),
        }
    }
}

#[repr(C)]
struct Regions {
    iommu: IommuRegion,
    root: MemoryRegion,
    bypass: MemoryRegion,
    space: AddressSpace,
}

/// The DMA address space an IOMMU gives one endpoint. It lives as long as
/// the machine (an IOMMU is not hot-unplugged, and the memory core keeps
/// references to its regions), so it is never freed.
#[derive(Debug)]
pub struct EndpointAddressSpace(NonNull<Regions>);

// SAFETY: only used with the BQL held.
unsafe impl Send for EndpointAddressSpace {}
unsafe impl Sync for EndpointAddressSpace {}

impl EndpointAddressSpace {
    /// Create the address space of `endpoint`, with IOMMU regions of the
    /// type `region_type` (registered with [`IommuRegionType::type_info`]
    /// for `T`) asking `iommu`, the QOM object `owner`. `bypass` chooses
    /// the region enabled first.
    pub fn new<T: IommuRegionOwner>(
        iommu: &T,
        owner: *mut Object,
        region_type: &CStr,
        name: &str,
        endpoint: u32,
        bypass: bool,
    ) -> Self {
        assert!(bql::is_locked());
        let cname = |suffix: &str| CString::new(format!("{name}{suffix}")).expect("region name");
        let (root_name, bypass_name, iommu_name) = (cname("-root"), cname("-bypass"), cname(""));
        // SAFETY: a zeroed block from the glib heap at a stable address, in
        // which each region and the address space are initialized in place;
        // the names are copied by the memory core.
        let regions = unsafe {
            let p = glib_sys::g_malloc0(size_of::<Regions>()).cast::<Regions>();
            let r = &mut *p;
            memory_region_init(&mut r.root, owner.cast(), root_name.as_ptr(), u64::MAX);
            memory_region_init_iommu(
                addr_of_mut!(r.iommu).cast(),
                size_of::<IommuRegion>(),
                region_type.as_ptr(),
                owner.cast(),
                iommu_name.as_ptr(),
                u64::MAX,
            );
            r.iommu.owner = std::ptr::from_ref(iommu).cast();
            r.iommu.endpoint = endpoint;
            memory_region_init_alias(
                &mut r.bypass,
                owner.cast(),
                bypass_name.as_ptr(),
                get_system_memory(),
                0,
                u64::MAX,
            );
            memory_region_add_subregion_overlap(&mut r.root, 0, addr_of_mut!(r.iommu.mr).cast(), 1);
            memory_region_add_subregion_overlap(&mut r.root, 0, &mut r.bypass, 1);
            address_space_init(&mut r.space, &mut r.root, iommu_name.as_ptr());
            NonNull::new(p).expect("g_malloc0")
        };
        let space = Self(regions);
        // Both regions start enabled: choose one.
        // SAFETY: both regions are initialized subregions of root.
        unsafe {
            let r = space.regions();
            memory_region_set_enabled(addr_of_mut!((*r).iommu.mr).cast(), !bypass);
            memory_region_set_enabled(addr_of_mut!((*r).bypass), bypass);
        }
        space
    }

    fn regions(&self) -> *mut Regions {
        self.0.as_ptr()
    }

    /// The address space to give the PCI core.
    pub fn as_ptr(&self) -> *mut AddressSpace {
        // SAFETY: a field of the live block.
        unsafe { addr_of_mut!((*self.regions()).space) }
    }

    /// The endpoint id the region reports (a requester id changes when the
    /// guest numbers the buses).
    pub fn set_endpoint(&self, endpoint: u32) {
        assert!(bql::is_locked());
        // SAFETY: a plain field, read by the callbacks under the BQL.
        unsafe {
            (*self.regions()).iommu.endpoint = endpoint;
        }
    }

    /// Send DMA straight to system memory (`true`) or through the IOMMU;
    /// whether that changed where it went.
    pub fn set_bypass(&self, bypass: bool) -> bool {
        assert!(bql::is_locked());
        // SAFETY: both regions are initialized subregions of root; the
        // alias's `enabled` is a plain field, written under the BQL.
        unsafe {
            let r = self.regions();
            if (*r).bypass.enabled == bypass {
                return false;
            }
            memory_region_transaction_begin();
            memory_region_set_enabled(addr_of_mut!((*r).iommu.mr).cast(), !bypass);
            memory_region_set_enabled(addr_of_mut!((*r).bypass), bypass);
            memory_region_transaction_commit();
        }
        true
    }

    /// Whether a notifier on the region wants to hear of maps (`map`) or
    /// of unmaps: with none, an IOMMU has nothing to build or send.
    pub fn has_notifiers(&self, map: bool) -> bool {
        assert!(bql::is_locked());
        let kind = if map {
            IOMMU_NOTIFIER_MAP
        } else {
            IOMMU_NOTIFIER_UNMAP
        };
        // SAFETY: a plain field of the live region, which the memory core
        // writes under the BQL when notifiers come and go.
        let flags = unsafe { (*self.regions()).iommu.mr.iommu_notify_flags };
        flags & kind != 0
    }

    /// Tell the region's notifiers that a block was mapped (some `perm`)
    /// or unmapped (none).
    pub fn notify(&self, entry: TlbEntry) {
        assert!(bql::is_locked());
        let event = IOMMUTLBEvent {
            type_: if entry.perm.is_none() {
                IOMMU_NOTIFIER_UNMAP
            } else {
                IOMMU_NOTIFIER_MAP
            },
            entry: tlb_entry_to_c(entry),
        };
        // SAFETY: the region is initialized; the memory core walks its
        // notifiers.
        unsafe {
            memory_region_notify_iommu(addr_of_mut!((*self.regions()).iommu.mr), 0, event);
        }
    }
}
