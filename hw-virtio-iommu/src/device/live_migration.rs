// SPDX-License-Identifier: GPL-2.0-or-later

//! Live migration, in the C device's stream: vmstate `virtio-iommu`
//! version 2 (priority `MIG_PRI_IOMMU`) holding the virtio core's state,
//! then `virtio-iommu-device` version 2, whose bytes the core writes and
//! checks (`virtio_iommu_core::migration`). Attached endpoints that the C
//! layout cannot carry (virtio-mmio ones) follow in a subsection sent only
//! when there are some, which a C destination refuses cleanly.

use std::ffi::CStr;

use common::errno::Errno;
use migration::{
    bindings::MigrationPriority, vmstate_fields, vmstate_subsections, VMStateDescription,
    VMStateDescriptionBuilder,
};
use util::{Error, Result};
use virtio::VMSTATE_VIRTIO_DEVICE;
use virtio_iommu_core::{load_extra_endpoints, load_state, MigrationError, StreamReader};
use vmstate_io::{post_load_result, QemuFile, VMStateCodec};

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
/// Loading parses the fields (and the subsection) first and changes the
/// device only in `post_load`, once the whole state has been read.
pub(super) const VMSTATE_VIRTIO_IOMMU_DEVICE: VMStateDescription<VirtioIommu> =
    VMStateDescriptionBuilder::<VirtioIommu>::new()
        .name(c"virtio-iommu-device")
        .version_id(2)
        .minimum_version_id(2)
        .post_load(&VirtioIommu::post_load)
        .fields(vmstate_fields! { vmstate_io::field::<VirtioIommu>(c"domains") })
        .subsections(vmstate_subsections!(VMSTATE_EXTRA_ENDPOINTS))
        .build();

/// The key of the subsection's codec.
pub(super) enum ExtraEndpoints {}

/// Attached endpoints above the PCI requester ids, with their domains.
const VMSTATE_EXTRA_ENDPOINTS: VMStateDescription<VirtioIommu> =
    VMStateDescriptionBuilder::<VirtioIommu>::new()
        .name(c"virtio-iommu-device/non-pci-endpoints")
        .version_id(1)
        .minimum_version_id(1)
        .needed(&VirtioIommu::has_extra_endpoints)
        .fields(vmstate_fields! {
            vmstate_io::keyed_field::<VirtioIommu, ExtraEndpoints>(c"endpoints")
        })
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

impl VirtioIommu {
    fn has_extra_endpoints(&self) -> bool {
        self.with_core(|core| core.has_extra_endpoints())
            .unwrap_or(false)
    }

    /// Replace the device's state with the one just read: a refused state
    /// leaves the device as it was. Everything derived follows: endpoint
    /// ids, each endpoint's address space, MAP replay to registered
    /// notifiers, and UNMAPs of what they could see before (a `loadvm`
    /// into a running VM), which also empty DMA API caches.
    fn post_load(&self, _version: u8) -> std::result::Result<(), Errno> {
        post_load_result(self.restore_pending())
    }

    fn restore_pending(&self) -> Result<()> {
        let fail = |e: MigrationError| Error::msg(format!("virtio-iommu-rs: {e}"));
        let state = self
            .pending_state
            .borrow_mut()
            .take()
            .ok_or_else(|| Error::msg("virtio-iommu-rs: no domains in the stream"))?;
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

impl VMStateCodec for VirtioIommu {
    const TYPE_NAME: &'static CStr = c"virtio-iommu-domains";

    fn save(&self, f: &mut QemuFile<'_>) {
        let mut bytes = Vec::new();
        self.with_core(|core| core.save_state(&mut bytes));
        f.put_bytes(&bytes);
    }

    /// Parse and check the stream's structure; `post_load` applies it.
    fn load(&self, f: &mut QemuFile<'_>) -> Result<()> {
        let state =
            load_state(&mut Reader(f)).map_err(|e| Error::msg(format!("virtio-iommu-rs: {e}")))?;
        *self.pending_state.borrow_mut() = Some(state);
        Ok(())
    }
}

impl VMStateCodec<ExtraEndpoints> for VirtioIommu {
    const TYPE_NAME: &'static CStr = c"virtio-iommu-endpoints";

    fn save(&self, f: &mut QemuFile<'_>) {
        let mut bytes = Vec::new();
        self.with_core(|core| core.save_extra_endpoints(&mut bytes));
        f.put_bytes(&bytes);
    }

    /// Add the endpoints to the state the `domains` field read.
    fn load(&self, f: &mut QemuFile<'_>) -> Result<()> {
        let mut pending = self.pending_state.borrow_mut();
        let state = pending
            .as_mut()
            .ok_or_else(|| Error::msg("virtio-iommu-rs: endpoints before the domains"))?;
        load_extra_endpoints(&mut Reader(f), state)
            .map_err(|e| Error::msg(format!("virtio-iommu-rs: {e}")))
    }
}
