// SPDX-License-Identifier: GPL-2.0-or-later

//! The virtio backend: config space, features and queues.

use std::{
    ffi::{c_char, c_int, CStr},
    mem::{offset_of, size_of},
    ptr::addr_of,
};

use bql::{BqlCell, BqlRefCell};
use common::{uninit_field_mut, Zeroable};
use hwcore::{
    bindings::{
        qdev_prop_array, qdev_prop_bool, qdev_prop_granule_mode, qdev_prop_string, qdev_prop_uint8,
        Property, Property__bindgen_ty_1,
    },
    DeviceImpl, DevicePropertiesImpl, ResettablePhasesImpl,
};
use migration::{VMStateDescription, VMStateDescriptionBuilder};
use qom::{prelude::*, ObjectImpl, ParentField, ParentInit};
use util::Result;
use virtio::{
    host_page_size, register_system_reset, unregister_system_reset, SystemReset, VirtIODevice,
    VirtIODeviceMethods, VirtQueue, VirtioDeviceClass, VirtioDeviceImpl,
};
use virtio_iommu_core::{
    config::{Config, CONFIG_SIZE},
    features::{self, DEVICE_FEATURES, VIRTIO_ID_IOMMU},
    properties::{parse_reserved_regions, Granule, PropertyError, ReservedRegion},
};

use crate::TYPE_VIRTIO_IOMMU_RS_DEVICE;

/// Entries in each virtqueue, as in the C device.
const QUEUE_SIZE: u16 = 256;

/// The virtqueues, created at realize.
#[derive(Debug)]
struct Queues {
    /// Driver requests (ATTACH, MAP, ...). Not processed yet: its buffers
    /// stay with the device rather than being answered with made-up statuses.
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
    aw_bits: u8,
    /// A QAPI `GranuleMode` value.
    granule: c_int,
    /// `reserved-regions`: an array of "START:END:TYPE" strings, owned by
    /// qdev's array property (elements) and by `Drop` (the array itself).
    resv_count: u32,
    resv_entries: *mut *mut c_char,

    // State.
    config: BqlCell<Config>,
    reserved_regions: BqlRefCell<Vec<ReservedRegion>>,
    queues: BqlRefCell<Option<Queues>>,
}

// SAFETY: the raw pointer is only touched with the BQL held, like the rest.
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
        Property {
            name: c"reserved-regions".as_ptr(),
            info: addr_of!(qdev_prop_array),
            offset: offset_of!(VirtioIommu, resv_count) as isize,
            set_default: true,
            defval: Property__bindgen_ty_1 { u: 0 },
            arrayinfo: addr_of!(qdev_prop_string),
            arrayoffset: offset_of!(VirtioIommu, resv_entries) as c_int,
            arrayfieldsize: size_of::<*mut c_char>() as c_int,
            ..Zeroable::ZERO
        },
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
        uninit_field_mut!(*this, reserved_regions).write(BqlRefCell::new(Vec::new()));
        uninit_field_mut!(*this, queues).write(BqlRefCell::new(None));
    }

    /// The `reserved-regions` strings as set by the user.
    fn reserved_region_entries(&self) -> Vec<String> {
        let count = self.resv_count as usize;
        if count == 0 || self.resv_entries.is_null() {
            return Vec::new();
        }
        // SAFETY: qdev's array property allocated `resv_count` pointers, each
        // to a NUL-terminated string (or NULL), and frees them only when the
        // device is finalized.
        let entries = unsafe { std::slice::from_raw_parts(self.resv_entries, count) };
        entries
            .iter()
            .map(|&p| {
                if p.is_null() {
                    String::new()
                } else {
                    // SAFETY: see above.
                    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
                }
            })
            .collect()
    }

    /// Check every property and compute the config space; no side effect,
    /// so a refused command line leaves nothing to clean up.
    fn config_from_properties(&self) -> Result<(Config, Vec<ReservedRegion>)> {
        let granule =
            Granule::from_qapi(self.granule).ok_or(PropertyError::Granule(self.granule))?;
        let config = Config::new(self.aw_bits, granule, host_page_size(), self.boot_bypass)?;
        let regions = parse_reserved_regions(&self.reserved_region_entries())?;
        Ok((config, regions))
    }

    fn realize(&self) -> Result<()> {
        let (config, regions) = self.config_from_properties()?;
        self.config.set(config);
        *self.reserved_regions.borrow_mut() = regions;

        self.virtio_init(VIRTIO_ID_IOMMU, CONFIG_SIZE);
        *self.queues.borrow_mut() = Some(Queues {
            request: self.add_queue(QUEUE_SIZE, None),
            event: self.add_queue(QUEUE_SIZE, None),
        });
        register_system_reset(self);
        Ok(())
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
        features | DEVICE_FEATURES
    }

    fn get_config(&self, out: &mut [u8]) {
        let bytes = self.config.get().to_bytes();
        let n = out.len().min(bytes.len());
        out[..n].copy_from_slice(&bytes[..n]);
    }

    fn set_config(&self, written: &[u8]) {
        let mut config = self.config.get();
        match config.driver_write(written, self.guest_has_feature(features::BYPASS_CONFIG)) {
            Ok(_) => self.config.set(config),
            Err(e) => self.virtio_error(&e.to_string()),
        }
    }

    /// The reserved regions accepted at realize.
    pub fn reserved_regions(&self) -> Vec<ReservedRegion> {
        self.reserved_regions.borrow().clone()
    }
}

impl SystemReset for VirtioIommu {
    /// A machine reset restores the `bypass` field the driver may have
    /// changed to the `boot-bypass` property.
    fn system_reset(&self) {
        let mut config = self.config.get();
        config.bypass = self.boot_bypass.into();
        self.config.set(config);
    }
}

impl Drop for VirtioIommu {
    fn drop(&mut self) {
        // qdev's array property freed the strings but not the array.
        // SAFETY: the array was allocated with g_malloc by qdev (or is NULL).
        unsafe {
            glib_sys::g_free(self.resv_entries.cast());
        }
    }
}

qom_isa!(VirtioIommu: VirtIODevice, hwcore::DeviceState, Object);

// SAFETY: TYPE_NAME is unique, and the struct starts with its parent.
unsafe impl ObjectType for VirtioIommu {
    type Class = VirtioDeviceClass;
    const TYPE_NAME: &'static CStr = TYPE_VIRTIO_IOMMU_RS_DEVICE;
}

impl ObjectImpl for VirtioIommu {
    type ParentType = VirtIODevice;
    const INSTANCE_INIT: Option<unsafe fn(ParentInit<Self>)> = Some(Self::init);
    const CLASS_INIT: fn(&mut Self::Class) = Self::Class::class_init::<Self>;
}

/// Migration is not implemented yet: say so instead of silently migrating
/// a device without its state.
const VMSTATE_VIRTIO_IOMMU_RS: VMStateDescription<VirtioIommu> =
    VMStateDescriptionBuilder::<VirtioIommu>::new()
        .name(c"virtio-iommu-rs")
        .unmigratable()
        .build();

impl DeviceImpl for VirtioIommu {
    const VMSTATE: Option<VMStateDescription<Self>> = Some(VMSTATE_VIRTIO_IOMMU_RS);
}

// The device holds no domains or mappings yet, so a device reset has
// nothing to clear; `bypass` is sticky across it (spec 5.13.4).
impl ResettablePhasesImpl for VirtioIommu {}

impl VirtioDeviceImpl for VirtioIommu {
    const VIRTIO_REALIZE: fn(&Self) -> Result<()> = Self::realize;
    const VIRTIO_UNREALIZE: Option<fn(&Self)> = Some(Self::unrealize);
    const GET_FEATURES: Option<fn(&Self, u64) -> u64> = Some(Self::get_features);
    const GET_CONFIG: Option<fn(&Self, &mut [u8])> = Some(Self::get_config);
    const SET_CONFIG: Option<fn(&Self, &[u8])> = Some(Self::set_config);
}
