// SPDX-License-Identifier: GPL-2.0-or-later

//! The virtio backend: config space, features and queues.

use std::{
    ffi::{c_int, CStr},
    mem::offset_of,
    ptr::{addr_of, NonNull},
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
};

use bql::{BqlCell, BqlRefCell};
use common::{uninit_field_mut, Zeroable};
use hwcore::{
    bindings::{
        qdev_prop_bool, qdev_prop_granule_mode, qdev_prop_uint8, Property, Property__bindgen_ty_1,
    },
    DeviceImpl, DevicePropertiesImpl, ResetType, ResettablePhasesImpl,
};
use iommu::RcuArc;
use migration::VMStateDescription;
use pci::PCIBus;
use qom::{prelude::*, ObjectImpl, ParentField, ParentInit};
use qom_props::StringArray;
use util::{Result, ResultExt};
use virtio::{
    add_queue, host_page_size, register_system_reset, unregister_system_reset, RequestChain,
    SystemReset, VirtIODevice, VirtIODeviceMethods, VirtQueue, VirtioDeviceClass, VirtioDeviceImpl,
};
use virtio_iommu_core::{
    bypass::{parse_bypass_devices, BypassDevice},
    config::{Config, CONFIG_SIZE},
    device::{Device, DeviceConfig, Reply, Response},
    features::{self, DEVICE_FEATURES, VIRTIO_ID_IOMMU},
    properties::{parse_reserved_regions, Granule, PropertyError, ReservedRegion},
    NoncoherentDevices, NotifierEvent, SavedState, TranslationView,
};

use crate::{TYPE_VIRTIO_IOMMU_RS_DEVICE, TYPE_VIRTIO_IOMMU_RS_MEMORY_REGION};

mod endpoints;
use endpoints::{Endpoint, MmioTransport};
mod introspection;
mod live_migration;
mod trace_points;

/// Entries in each virtqueue, as in the C device.
const QUEUE_SIZE: u16 = 256;

/// Translations under the core's lock after a change before the next ones
/// read a snapshot without a lock (see `note_locked_read`).
const VIEW_AFTER_READS: u32 = 64;

/// Index of the request queue; the event queue follows it.
const REQUEST_QUEUE: u16 = 0;

/// Bytes of a request the device reads: the largest request (PROBE, 72
/// bytes) and more; trailing bytes are ignored, so a guest cannot make the
/// device copy a huge buffer.
const MAX_REQUEST_LEN: usize = 128;

/// The virtqueues, created at realize.
#[derive(Debug)]
struct Queues {
    /// Driver requests (ATTACH, MAP, ...).
    request: VirtQueue,
    /// Fault reports to the driver.
    event: VirtQueue,
}

/// The virtio-iommu backend (`virtio-iommu-rs-device`).
#[repr(C)]
#[derive(qom::Object)]
pub struct VirtioIommu {
    parent_obj: ParentField<VirtIODevice>,

    // Properties, set by qdev before realize and read-only afterwards.
    boot_bypass: bool,
    /// `x-copy-requests`: take requests without mapping them when they are
    /// plain guest RAM (`VirtQueue::pop_request`); off, every request goes
    /// through `virtqueue_pop`, which the equivalence test compares with.
    copy_requests: bool,
    aw_bits: u8,
    /// A QAPI `GranuleMode` value.
    granule: c_int,
    /// `reserved-regions`: "START:END:TYPE" strings.
    reserved_regions: StringArray,
    /// `bypass-devices`: device ids and PCI addresses.
    bypass_devices: StringArray,
    /// `noncoherent-devices`: device ids.
    noncoherent_devices: StringArray,

    /// The root bus the proxy sits on, set before realize: the IOMMU
    /// serves its devices.
    primary_bus: BqlCell<Option<NonNull<PCIBus>>>,

    // State.
    config: BqlCell<Config>,
    queues: BqlRefCell<Option<Queues>>,
    /// Domains, endpoints and mappings, from realize on. Requests change
    /// it with the BQL held; a mutex, not a BQL cell, because a fault from
    /// an I/O thread's translation is queued without the BQL.
    core: Mutex<Option<Device>>,
    /// What translation reads without a lock, when present: a snapshot of
    /// the core, taken once the core has stopped changing long enough to
    /// be translated through `VIEW_AFTER_READS` times (see `translate`),
    /// and withdrawn by the next change before it is answered (see
    /// `with_core`).
    view: RcuArc<TranslationView>,
    /// Translations made under the core's lock since the last change.
    locked_reads: AtomicU32,
    /// `page_size_mask`'s granule minus one, for translation.
    granule_mask: AtomicU64,
    endpoints: BqlRefCell<Vec<Endpoint>>,
    /// IOMMU notifier calls (one per `IOMMUTLBEntry`) and address space
    /// switches made, for introspection.
    notifier_calls: BqlCell<u64>,
    space_switches: BqlCell<u64>,
    /// Snapshots published for lock-free translation.
    snapshots: BqlCell<u64>,
    /// Requests taken without mapping them (`x-copy-requests`).
    copied_requests: BqlCell<u64>,
    /// The virtio-mmio transports the machine offered, with the endpoint
    /// id it gave each (arm virt; none on q35).
    mmio_transports: BqlRefCell<Vec<MmioTransport>>,
    /// `noncoherent-devices`, parsed at realize.
    noncoherent: BqlRefCell<NoncoherentDevices>,
    /// A migration stream's state, read but not applied yet (`post_load`).
    pending_state: BqlRefCell<Option<SavedState>>,
    /// Whether `bypass-devices` has been checked against the devices that
    /// exist (at the first system reset, once machine creation is done).
    bypass_checked: BqlCell<bool>,
}

// SAFETY: the pointers it holds (the primary bus, the endpoints' PCI buses
// and virtio-mmio transports) are only used with the BQL held, like the
// rest of the device.
unsafe impl Send for VirtioIommu {}
unsafe impl Sync for VirtioIommu {}

// SAFETY: each property's PropertyInfo matches its field's C type (bool,
// uint8_t, int, and a uint32_t length with an array of char * strings).
unsafe impl DevicePropertiesImpl for VirtioIommu {
    const PROPERTIES: &'static [Property] = &[
        Property {
            name: c"boot-bypass".as_ptr(),
            info: addr_of!(qdev_prop_bool),
            offset: offset_of!(VirtioIommu, boot_bypass) as isize,
            set_default: true,
            defval: Property__bindgen_ty_1 { u: 1 },
            ..Zeroable::ZERO
        },
        Property {
            name: c"x-copy-requests".as_ptr(),
            info: addr_of!(qdev_prop_bool),
            offset: offset_of!(VirtioIommu, copy_requests) as isize,
            set_default: true,
            defval: Property__bindgen_ty_1 { u: 1 },
            ..Zeroable::ZERO
        },
        Property {
            name: c"granule".as_ptr(),
            info: addr_of!(qdev_prop_granule_mode),
            offset: offset_of!(VirtioIommu, granule) as isize,
            set_default: true,
            defval: Property__bindgen_ty_1 {
                i: GRANULE_MODE_HOST,
            },
            ..Zeroable::ZERO
        },
        Property {
            name: c"aw-bits".as_ptr(),
            info: addr_of!(qdev_prop_uint8),
            offset: offset_of!(VirtioIommu, aw_bits) as isize,
            set_default: true,
            defval: Property__bindgen_ty_1 { u: 64 },
            ..Zeroable::ZERO
        },
        StringArray::property(
            c"reserved-regions",
            offset_of!(VirtioIommu, reserved_regions),
        ),
        StringArray::property(c"bypass-devices", offset_of!(VirtioIommu, bypass_devices)),
        StringArray::property(
            c"noncoherent-devices",
            offset_of!(VirtioIommu, noncoherent_devices),
        ),
    ];
}

/// `GRANULE_MODE_HOST` in QAPI's `GranuleMode`.
const GRANULE_MODE_HOST: i64 = 4;

impl VirtioIommu {
    /// Initialize the fields that are not properties (qdev has already
    /// stored the properties' defaults).
    unsafe fn init(mut this: ParentInit<Self>) {
        uninit_field_mut!(*this, config).write(BqlCell::new(Config {
            page_size_mask: 0,
            input_start: 0,
            input_end: 0,
            domain_start: 0,
            domain_end: 0,
            probe_size: 0,
            bypass: 0,
        }));
        uninit_field_mut!(*this, queues).write(BqlRefCell::new(None));
        uninit_field_mut!(*this, primary_bus).write(BqlCell::new(None));
        uninit_field_mut!(*this, core).write(Mutex::new(None));
        uninit_field_mut!(*this, view).write(RcuArc::default());
        uninit_field_mut!(*this, locked_reads).write(AtomicU32::new(0));
        uninit_field_mut!(*this, granule_mask).write(AtomicU64::new(0));
        uninit_field_mut!(*this, endpoints).write(BqlRefCell::new(Vec::new()));
        uninit_field_mut!(*this, mmio_transports).write(BqlRefCell::new(Vec::new()));
        uninit_field_mut!(*this, noncoherent).write(BqlRefCell::new(NoncoherentDevices::default()));
        uninit_field_mut!(*this, pending_state).write(BqlRefCell::new(None));
        uninit_field_mut!(*this, notifier_calls).write(BqlCell::new(0));
        uninit_field_mut!(*this, space_switches).write(BqlCell::new(0));
        uninit_field_mut!(*this, snapshots).write(BqlCell::new(0));
        uninit_field_mut!(*this, copied_requests).write(BqlCell::new(0));
        uninit_field_mut!(*this, bypass_checked).write(BqlCell::new(false));
    }

    /// Serve the devices of `bus`; called by the proxy before realize.
    pub fn set_primary_bus(&self, bus: &PCIBus) {
        self.primary_bus.set(Some(NonNull::from(bus)));
    }

    /// Check every property and compute the config space; no side effect,
    /// so a refused command line leaves nothing to clean up.
    #[allow(clippy::type_complexity)]
    fn config_from_properties(
        &self,
    ) -> Result<(
        Config,
        Vec<ReservedRegion>,
        Vec<BypassDevice>,
        NoncoherentDevices,
    )> {
        let granule =
            Granule::from_qapi(self.granule).ok_or(PropertyError::Granule(self.granule))?;
        let config = Config::new(self.aw_bits, granule, host_page_size(), self.boot_bypass)?;
        let regions = parse_reserved_regions(&self.reserved_regions.to_vec())?;
        let bypass = parse_bypass_devices(&self.bypass_devices.to_vec())?;
        let noncoherent = NoncoherentDevices::parse(&self.noncoherent_devices.to_vec())?;
        Ok((config, regions, bypass, noncoherent))
    }

    fn realize(&self) -> Result<()> {
        let (config, regions, bypass_devices, noncoherent) = self.config_from_properties()?;
        let bus = self
            .primary_bus
            .get()
            .ok_or_else(|| util::Error::msg("virtio-iommu-rs is not attached to any PCI bus"))?;
        self.config.set(config);
        *self.noncoherent.borrow_mut() = noncoherent;
        // The smallest page size is the mask's lowest set bit.
        let granule = config.page_size_mask & config.page_size_mask.wrapping_neg();
        self.granule_mask
            .store(granule.wrapping_sub(1), Ordering::Relaxed);
        *self.core.lock().unwrap_or_else(PoisonError::into_inner) = Some(Device::new(
            DeviceConfig::new(&config, &regions).with_bypass_devices(&bypass_devices),
            self.boot_bypass,
        ));

        self.virtio_init(VIRTIO_ID_IOMMU, CONFIG_SIZE);
        *self.queues.borrow_mut() = Some(Queues {
            request: add_queue(self, QUEUE_SIZE, true),
            event: add_queue(self, QUEUE_SIZE, false),
        });
        register_system_reset(self);
        // SAFETY: the bus outlives the IOMMU plugged into it.
        unsafe { bus.as_ref() }.setup_iommu(self);
        Ok(())
    }

    /// Once machine creation is done (the first system reset comes right
    /// after every cold-plugged device got its endpoint), make sure every
    /// `bypass-devices` element named a device: a typo must not leave a
    /// device translated that the user meant to exempt. QEMU exits then,
    /// as for any bad command line.
    fn check_bypass_devices(&self) {
        if self.bypass_checked.replace(true) {
            return;
        }
        let machine_describes = !self.mmio_transports.borrow().is_empty();
        let noncoherent = self.noncoherent.borrow().unmatched(machine_describes);
        if let Some(checked) = self
            .with_core(|core| core.check_bypass_devices())
            .map(|bypass| bypass.and(noncoherent))
        {
            // A user error found once the machine exists: report, exit(1).
            checked
                .map_err(|e| util::Error::msg(format!("virtio-iommu-rs: {e}")))
                .unwrap_fatal();
        }
    }

    /// Run `f` on the core, if realized. If `f` changed what translation
    /// depends on, the snapshot translations read is withdrawn before this
    /// returns, so before the caller answers the driver or tells a
    /// notifier: from then on translations take the core's lock and see
    /// the change, so none uses a mapping whose UNMAP was answered or
    /// misses one whose MAP was. The lock is never held while calling back
    /// into QEMU, which may translate again.
    fn with_core<R>(&self, f: impl FnOnce(&mut Device) -> R) -> Option<R> {
        let mut guard = self.core.lock().unwrap_or_else(PoisonError::into_inner);
        let core = guard.as_mut()?;
        let result = f(core);
        // Changes are made with the BQL held (requests, config writes,
        // resets, hotplug, migration), as is every publication; a fault
        // queued by an I/O thread's translation changes nothing a view
        // holds.
        let changed = bql::is_locked() && core.take_changed();
        drop(guard);
        if changed {
            self.view.clear();
            self.locked_reads.store(0, Ordering::Relaxed);
        }
        Some(result)
    }

    /// A translation went through the core's lock: once enough have since
    /// the last change, publish a snapshot so the next ones take no lock.
    /// Taking one costs about as much as a thousand locked translations,
    /// and a strict-mode guest translates a buffer only a few times
    /// between its MAP and its UNMAP, so snapshots are only worth taking
    /// once the mappings are read more than they change.
    fn note_locked_read(&self) {
        let reads = self.locked_reads.fetch_add(1, Ordering::Relaxed) + 1;
        // Only with the BQL: no change can come between the snapshot and
        // its publication.
        if reads >= VIEW_AFTER_READS && bql::is_locked() {
            if let Some(view) = self.with_core(|core| core.view()) {
                self.view.publish(Arc::new(view));
                self.snapshots.set(self.snapshots.get().saturating_add(1));
            }
        }
    }

    /// The granule minus one: translations are at least this large.
    fn granule_mask(&self) -> u64 {
        self.granule_mask.load(Ordering::Relaxed)
    }

    /// Answer every request the driver made available, as the C device
    /// does: a chain too small for a head and a tail is a driver error that
    /// stops the queue until the device is reset.
    fn handle_requests(&self) {
        self.sync_endpoints();
        let queues = self.queues.borrow();
        let Some(vq) = queues.as_ref().map(|q| &q.request) else {
            return;
        };
        // Each answer is published (used ring and index) as soon as the
        // request is carried out: the next pop, or a malformed next chain,
        // may mark the device broken, after which the virtio core drops
        // whatever is filled or flushed, and a request carried out must
        // never go unanswered. The driver is notified once per batch.
        let mut answered = false;
        let mut request = [0u8; MAX_REQUEST_LEN];
        // One reply for the batch: answering allocates nothing per request.
        let mut reply = Reply::default();
        while let Some((chain, len)) = vq.pop_request(&mut request, self.copy_requests) {
            let request = request.get(..len).unwrap_or_default();
            let writable = chain.writable_len();
            if matches!(chain, RequestChain::Copied(_)) {
                self.copied_requests
                    .set(self.copied_requests.get().saturating_add(1));
            }
            trace_points::request(request);
            if self
                .with_core(|core| core.handle_request_into(request, writable, &mut reply))
                .is_none()
            {
                break;
            }
            // Notifiers (vhost, VFIO, DMA caches) hear of an UNMAP before
            // the driver learns it is done.
            self.apply_events(&reply.events);
            match &reply.response {
                Response::Used(bytes) => {
                    vq.push_request(chain, bytes);
                    answered = true;
                }
                Response::BadHeadTail => {
                    drop(chain);
                    self.virtio_error("virtio-iommu bad head/tail size");
                    break;
                }
            }
        }
        if answered {
            self.notify(vq);
        }
    }

    fn handle_output(&self, queue: u16) {
        if queue == REQUEST_QUEUE {
            self.handle_requests();
        }
    }

    fn unrealize(&self) {
        unregister_system_reset(self);
        let queues = self.queues.borrow_mut().take();
        if let Some(q) = queues {
            self.delete_queue(q.request);
            self.delete_queue(q.event);
        }
        self.virtio_cleanup();
    }

    fn get_features(&self, features: u64) -> u64 {
        trace_points::get_features(features | DEVICE_FEATURES);
        features | DEVICE_FEATURES
    }

    fn get_config(&self, out: &mut [u8]) {
        let config = self.config.get();
        trace_points::get_config(&config);
        let bytes = config.to_bytes();
        let n = out.len().min(bytes.len());
        out[..n].copy_from_slice(&bytes[..n]);
    }

    fn set_config(&self, written: &[u8]) {
        let mut config = self.config.get();
        match config.driver_write(written, self.guest_has_feature(features::BYPASS_CONFIG)) {
            Ok(changed) => {
                trace_points::set_config(config.bypass);
                self.config.set(config);
                if changed {
                    self.set_core_bypass(config.bypass != 0);
                }
            }
            Err(e) => self.virtio_error(&e.to_string()),
        }
    }

    fn set_core_bypass(&self, bypass: bool) {
        let events = self.with_core(|core| core.set_bypass(bypass));
        self.apply_events(&events.unwrap_or_default());
    }

    /// A device (cold) reset forgets every domain and attachment, as in the
    /// C device; a driver's virtio reset does not. `bypass` is sticky.
    fn reset_exit(&self, _type: ResetType) {
        trace_points::device_reset_exit();
        let events: Option<Vec<NotifierEvent>> = self.with_core(Device::reset);
        self.apply_events(&events.unwrap_or_default());
    }
}

impl SystemReset for VirtioIommu {
    /// A machine reset restores the `bypass` field the driver may have
    /// changed to the `boot-bypass` property.
    fn system_reset(&self) {
        trace_points::system_reset();
        self.check_bypass_devices();
        let mut config = self.config.get();
        config.bypass = self.boot_bypass.into();
        self.config.set(config);
        self.set_core_bypass(self.boot_bypass);
    }
}

qom_isa!(VirtioIommu: VirtIODevice, hwcore::DeviceState, Object);

// The type of the endpoints' IOMMU memory regions.
iommu::register_iommu_region_type!(VirtioIommu, TYPE_VIRTIO_IOMMU_RS_MEMORY_REGION);

// SAFETY: TYPE_NAME is unique, and the struct starts with its parent.
unsafe impl ObjectType for VirtioIommu {
    type Class = VirtioDeviceClass;
    const TYPE_NAME: &'static CStr = TYPE_VIRTIO_IOMMU_RS_DEVICE;
}

impl ObjectImpl for VirtioIommu {
    type ParentType = VirtIODevice;
    const INSTANCE_INIT: Option<unsafe fn(ParentInit<Self>)> = Some(Self::init);
    const CLASS_INIT: fn(&mut Self::Class) = Self::class_init;
}

impl VirtioIommu {
    fn class_init(klass: &mut VirtioDeviceClass) {
        klass.class_init::<Self>();
        // What `-device virtio-iommu-rs,help` says of each property (the
        // proxy's aliases take the descriptions along).
        for (name, text) in PROPERTY_HELP {
            qom_props::describe_class_property::<Self>(klass, name, text);
        }
    }
}

/// The properties' help texts: meaning, range or syntax.
const PROPERTY_HELP: [(&CStr, &CStr); 7] = [
    (
        c"boot-bypass",
        c"DMA of endpoints not attached to a domain bypasses the IOMMU from \
          reset until the driver says otherwise (config bypass); on/off",
    ),
    (
        c"x-copy-requests",
        c"read requests and write answers in plain guest RAM by copying, \
          without mapping them (on, the default); off takes every request \
          through virtqueue_pop, as the C device does (for testing); on/off",
    ),
    (
        c"granule",
        c"smallest page the IOMMU maps: 4k, 8k, 16k, 64k or host (the host's \
          page size); page_size_mask holds it and every larger power of two",
    ),
    (
        c"aw-bits",
        c"input address width, 32 to 64: IOVAs range over [0, 2^aw-bits - 1] \
          (machines may set a default: 39 on q35, 48 on arm virt)",
    ),
    (
        c"reserved-regions",
        c"regions PROBE reports, a list of START:END:TYPE (hexadecimal \
          addresses, END inclusive; TYPE 0 reserved, 1 MSI)",
    ),
    (
        c"bypass-devices",
        c"devices whose DMA never goes through the IOMMU, a list of qdev ids \
          and root-bus PCI addresses BUS:DEV.FN (hexadecimal)",
    ),
    (
        c"noncoherent-devices",
        c"virtio-mmio devices (qdev ids) whose DMA the firmware describes as \
          not cache-coherent (arm virt under TCG only)",
    ),
];

impl DeviceImpl for VirtioIommu {
    const VMSTATE: Option<VMStateDescription<Self>> = Some(live_migration::VMSTATE_VIRTIO_IOMMU);
}

impl ResettablePhasesImpl for VirtioIommu {
    // The exit phase, as the C device: DMA has been quiesced by then.
    const EXIT: Option<fn(&Self, ResetType)> = Some(Self::reset_exit);
}

impl VirtioDeviceImpl for VirtioIommu {
    const VIRTIO_REALIZE: fn(&Self) -> Result<()> = Self::realize;
    const VIRTIO_UNREALIZE: Option<fn(&Self)> = Some(Self::unrealize);
    const GET_FEATURES: Option<fn(&Self, u64) -> u64> = Some(Self::get_features);
    const GET_CONFIG: Option<fn(&Self, &mut [u8])> = Some(Self::get_config);
    const SET_CONFIG: Option<fn(&Self, &[u8])> = Some(Self::set_config);
    const HANDLE_OUTPUT: Option<fn(&Self, u16)> = Some(Self::handle_output);
    const VIRTIO_VMSTATE: Option<VMStateDescription<Self>> =
        Some(live_migration::VMSTATE_VIRTIO_IOMMU_DEVICE);
}
