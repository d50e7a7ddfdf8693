// SPDX-License-Identifier: GPL-2.0-or-later

//! Live migration, in the C device's stream: vmstate `virtio-iommu`
//! version 2 (priority `MIG_PRI_IOMMU`) holding the virtio core's state,
//! then `virtio-iommu-device` version 2, whose bytes the core writes and
//! checks (`virtio_iommu_core::migration`).

use std::ffi::CStr;

use migration::{
    bindings::MigrationPriority, vmstate_fields, VMStateDescription, VMStateDescriptionBuilder,
};
use util::{Error, Result};
use virtio::VMSTATE_VIRTIO_DEVICE;
use virtio_iommu_core::{load_state, MigrationError, StreamReader};
use vmstate_io::{QemuFile, VMStateCodec};

use super::VirtioIommu;

/// The section: the same name, version and priority as the C device's,
/// so that a stream saved by either loads into the other. IOMMUs load
/// before the devices whose DMA they translate, and after PCI bridges
/// (`MIG_PRI_PCI_BUS`), whose bus numbers make the endpoint ids.
pub(super) const VMSTATE_VIRTIO_IOMMU: VMStateDescription<VirtioIommu> =
    VMStateDescriptionBuilder::<VirtioIommu>::new()
        .name(c"virtio-iommu")
        .version_id(2)
        .minimum_version_id(2)
        .priority(MigrationPriority::MIG_PRI_IOMMU)
        .fields(vmstate_fields! { VMSTATE_VIRTIO_DEVICE })
        .build();

/// The device's own state, after the virtio core's. C has two fields
/// (`domains`, `config.bypass`); one codec writes both, byte for byte.
pub(super) const VMSTATE_VIRTIO_IOMMU_DEVICE: VMStateDescription<VirtioIommu> =
    VMStateDescriptionBuilder::<VirtioIommu>::new()
        .name(c"virtio-iommu-device")
        .version_id(2)
        .minimum_version_id(2)
        .fields(vmstate_fields! { vmstate_io::field::<VirtioIommu>(c"domains") })
        .build();

/// The core's reader over the migration stream.
struct Reader<'a, 'f>(&'a mut QemuFile<'f>);

impl StreamReader for Reader<'_, '_> {
    fn read_u8(&mut self) -> std::result::Result<u8, MigrationError> {
        self.0.get_u8().map_err(|_| truncated())
    }

    fn read_be32(&mut self) -> std::result::Result<u32, MigrationError> {
        self.0.get_be32().map_err(|_| truncated())
    }

    fn read_be64(&mut self) -> std::result::Result<u64, MigrationError> {
        self.0.get_be64().map_err(|_| truncated())
    }
}

const fn truncated() -> MigrationError {
    MigrationError::Truncated { field: None }
}

impl VMStateCodec for VirtioIommu {
    const TYPE_NAME: &'static CStr = c"virtio-iommu-domains";

    fn save(&self, f: &mut QemuFile<'_>) {
        let mut bytes = Vec::new();
        self.with_core(|core| core.save_state(&mut bytes));
        f.put_bytes(&bytes);
    }

    /// Parse and check the whole state, then replace the device's with it:
    /// a refused stream leaves the device as it was. Everything derived
    /// follows: endpoint ids, each endpoint's address space, MAP replay to
    /// registered notifiers, and UNMAPs of what they could see before
    /// (a `loadvm` into a running VM), which also empty DMA API caches.
    fn load(&self, f: &mut QemuFile<'_>) -> Result<()> {
        let fail = |e: MigrationError| Error::msg(format!("virtio-iommu-rs: {e}"));
        let state = load_state(&mut Reader(f)).map_err(fail)?;
        // Bridges were loaded first: the ids are the source's now.
        self.sync_endpoints();
        let managed = self.managed_ids();
        let bypass = state.bypass;
        let events = self
            .with_core(|core| core.restore(state, |id| managed.contains(&id)))
            .ok_or_else(|| Error::msg("virtio-iommu-rs: not realized"))?
            .map_err(fail)?;
        let mut config = self.config.get();
        config.bypass = bypass.into();
        self.config.set(config);
        self.apply_events(&events);
        Ok(())
    }
}
