// SPDX-License-Identifier: GPL-2.0-or-later

//! The devices behind the IOMMU (PCI devices, and virtio-mmio devices
//! where the machine offers their transports): their DMA address spaces,
//! the translation of their accesses, and passing on what the core reports
//! (notifier events, faults).

use std::ptr::NonNull;

use iommu::{
    perm_flags, EndpointAddressSpace, IOMMUNotifierFlag, IommuRegionOwner, Reader, TlbEntry,
    IOMMU_NOTIFIER_DEVIOTLB_UNMAP, IOMMU_NOTIFIER_NONE,
};
use pci::{bindings::AddressSpace, PCIBus, PCIDevice, PCIDeviceMethods, PciIommu};
use qom::ObjectType;
use util::Result;
use virtio::{VirtIODeviceMethods, VirtIOMMIOProxy, VirtioMmioIommu};
use virtio_iommu_core::{
    aligned_blocks, Device, FaultDelivery, NotifierEvent, PciDeviceRef, Perm, Translated,
};

use super::{trace_points, VirtioIommu};
use crate::TYPE_VIRTIO_IOMMU_RS_MEMORY_REGION;

/// Where a device behind the IOMMU sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// A PCI device. Its endpoint id is its requester id, which depends on
    /// the bus number the guest gives its bus, so it is recomputed before
    /// requests are handled.
    Pci { bus: NonNull<PCIBus>, devfn: u8 },
    /// The device plugged into a virtio-mmio transport; its endpoint id is
    /// the one the machine gave the transport, for good.
    Mmio(NonNull<VirtIOMMIOProxy>),
}

/// A virtio-mmio transport the machine offered the IOMMU
/// (`attach_virtio_mmio`), with the endpoint id its firmware tables use.
#[derive(Debug)]
pub(super) struct MmioTransport {
    transport: NonNull<VirtIOMMIOProxy>,
    endpoint: u32,
}

/// A device behind the IOMMU.
#[derive(Debug)]
pub(super) struct Endpoint {
    slot: Slot,
    /// The id the core and the IOMMU region know it by.
    id: u32,
    /// Named by `bypass-devices`: its address space is the bypass alias
    /// for good, and the core does not manage it.
    unmanaged: bool,
    space: EndpointAddressSpace,
}

/// Where an endpoint's device is, as introspection shows it.
pub(super) struct Placement {
    /// `pci` or `virtio-mmio`.
    pub bus: &'static str,
    /// `BB:DD.F`, or the transport's base address.
    pub address: String,
    /// The device's qdev id, if it has one.
    pub qdev_id: Option<String>,
}

impl Endpoint {
    pub(super) const fn id(&self) -> u32 {
        self.id
    }

    /// Whether `bypass-devices` names the device.
    pub(super) const fn unmanaged(&self) -> bool {
        self.unmanaged
    }

    pub(super) fn placement(&self) -> Placement {
        match self.slot {
            Slot::Pci { bus, devfn } => {
                // SAFETY: buses outlive the devices plugged into them.
                let bus = unsafe { bus.as_ref() };
                Placement {
                    bus: "pci",
                    address: format!("{:02x}:{:02x}.{:x}", bus.bus_num(), devfn >> 3, devfn & 7),
                    qdev_id: bus.device(devfn).and_then(|d| d.qdev_id()),
                }
            }
            Slot::Mmio(transport) => {
                // SAFETY: transports live as long as the machine.
                let transport = unsafe { transport.as_ref() };
                Placement {
                    bus: "virtio-mmio",
                    address: format!("0x{:x}", transport.base()),
                    qdev_id: transport.device_id(),
                }
            }
        }
    }
}

fn requester_id(bus: &PCIBus, devfn: u8) -> u32 {
    u32::from(bus.bus_num()) << 8 | u32::from(devfn)
}

/// The TLB entries of `[iova, end]` mapped to `phys` (or unmapped: no
/// rights), in the aligned blocks an `IOMMUTLBEntry` can describe.
fn block_entries(iova: u64, end: u64, phys: u64, perm: Perm) -> impl Iterator<Item = TlbEntry> {
    aligned_blocks(iova, end).map(move |(block, addr_mask)| TlbEntry {
        iova: block,
        translated_addr: if perm.is_none() {
            0
        } else {
            phys.wrapping_add(block.wrapping_sub(iova))
        },
        addr_mask,
        perm,
    })
}

impl VirtioIommu {
    /// Follow the requester ids of the endpoints whose bus the guest has
    /// (re)numbered since the last request.
    pub(super) fn sync_endpoints(&self) {
        let mut events = Vec::new();
        let mut endpoints = self.endpoints.borrow_mut();
        let mut changed = false;
        for ep in endpoints.iter_mut() {
            let Slot::Pci { bus, devfn } = ep.slot else {
                continue;
            };
            // SAFETY: buses outlive the devices plugged into them.
            let id = requester_id(unsafe { bus.as_ref() }, devfn);
            if id == ep.id {
                continue;
            }
            changed = true;
            self.with_core(|core| events.extend(core.remove_endpoint(ep.id)));
            ep.id = id;
            ep.space.set_endpoint(id);
        }
        if !changed {
            drop(endpoints);
            self.apply_events(&events);
            return;
        }
        // Register every endpoint again: before the firmware numbered the
        // buses, endpoints behind bridges shared ids with those on the
        // root bus, and removing an old id forgot all of them.
        for ep in endpoints.iter() {
            let bypass = self.with_core(|core| {
                if ep.unmanaged {
                    core.add_unmanaged_endpoint(ep.id);
                } else {
                    core.add_endpoint(ep.id);
                }
                core.endpoint_bypassed(ep.id)
            });
            // An unmanaged endpoint's space never leaves the bypass alias.
            ep.space.set_bypass(ep.unmanaged || bypass.unwrap_or(true));
        }
        drop(endpoints);
        self.apply_events(&events);
    }

    /// The ids of the endpoints the IOMMU manages (not `bypass-devices`).
    pub(super) fn managed_ids(&self) -> Vec<u32> {
        self.endpoints
            .borrow()
            .iter()
            .filter(|e| !e.unmanaged)
            .map(|e| e.id)
            .collect()
    }

    /// Whether `dev` is a device this IOMMU was told not to manage
    /// (`bypass-devices`), for the ACPI VIOT and the device tree's
    /// iommu-map. Asked of the property, not of the endpoints: arm virt
    /// builds its iommu-map before cold-plugged devices have theirs.
    pub(crate) fn pci_device_bypassed(&self, dev: &PCIDevice) -> bool {
        let bus = dev.bus();
        let id = dev.qdev_id();
        let device = PciDeviceRef {
            id: id.as_deref(),
            root_bus: bus.is_root().then(|| bus.bus_num()),
            devfn: dev.devfn(),
        };
        self.with_core(|core| core.names_unmanaged(&device))
            .unwrap_or(false)
    }

    /// Pass the core's events on: notifier MAP/UNMAP on the endpoint's
    /// region, in the aligned blocks `IOMMUTLBEntry` describes, and address
    /// space switches between translation and bypass. As in the C device, a
    /// MAP or UNMAP no notifier listens for is neither traced nor sent.
    pub(super) fn apply_events(&self, events: &[NotifierEvent]) {
        let endpoints = self.endpoints.borrow();
        // Unmanaged endpoints are left out: should one share its id with a
        // managed endpoint (buses not numbered yet), the events are not its.
        let space = |id: u32| {
            endpoints
                .iter()
                .find(|e| e.id == id && !e.unmanaged)
                .map(|e| &e.space)
        };
        for event in events {
            match *event {
                NotifierEvent::Map {
                    endpoint,
                    iova,
                    end,
                    phys,
                    perm,
                } => {
                    if let Some(space) = space(endpoint).filter(|s| s.has_notifiers(true)) {
                        trace_points::notify_map(iova, end, phys, perm_flags(perm));
                        block_entries(iova, end, phys, perm)
                            .for_each(|e| self.notify_one(space, e));
                    }
                }
                NotifierEvent::Unmap {
                    endpoint,
                    iova,
                    end,
                } => {
                    if let Some(space) = space(endpoint).filter(|s| s.has_notifiers(false)) {
                        trace_points::notify_unmap(iova, end);
                        block_entries(iova, end, 0, Perm::NONE)
                            .for_each(|e| self.notify_one(space, e));
                    }
                }
                NotifierEvent::SwitchAddressSpace { endpoint, bypass } => {
                    if space(endpoint).is_some_and(|space| space.set_bypass(bypass)) {
                        trace_points::switch_address_space(endpoint, !bypass);
                        self.space_switches
                            .set(self.space_switches.get().saturating_add(1));
                    }
                }
            }
        }
    }

    fn notify_one(&self, space: &EndpointAddressSpace, entry: TlbEntry) {
        space.notify(entry);
        self.notifier_calls
            .set(self.notifier_calls.get().saturating_add(1));
    }

    /// Write pending faults into the event buffers the driver posted. As
    /// in the C device, a fault with no buffer to take it is dropped
    /// (counted by the core), and a buffer too small for a fault is a
    /// driver error.
    pub(super) fn deliver_faults(&self) {
        let queues = self.queues.borrow();
        let Some(vq) = queues.as_ref().map(|q| &q.event) else {
            return;
        };
        while self.with_core(|core| !core.faults().is_empty()) == Some(true) {
            let Some(elem) = vq.pop() else {
                self.with_core(|core| core.faults().drop_pending());
                break;
            };
            let writable = elem.writable_len();
            match self
                .with_core(|core| core.faults().deliver(writable))
                .flatten()
            {
                Some(FaultDelivery::Write(bytes)) => {
                    let written = elem.write(&bytes);
                    vq.push(elem, u32::try_from(written).unwrap_or(u32::MAX));
                    self.notify(vq);
                }
                Some(FaultDelivery::BufferTooSmall) => {
                    drop(elem);
                    self.virtio_error("error buffer of wrong size");
                    break;
                }
                None => break,
            }
        }
    }
}

impl VirtioIommu {
    /// The address space of the device at `slot`, created the first time
    /// it is asked for: an endpoint `id` the core manages unless
    /// `bypass-devices` names the device (`add` registers it with the core
    /// and says whether it is unmanaged).
    fn endpoint_space(
        &self,
        slot: Slot,
        id: u32,
        name: &str,
        add: impl FnOnce(&mut Device) -> bool,
    ) -> *mut AddressSpace {
        if let Some(ep) = self.endpoints.borrow().iter().find(|e| e.slot == slot) {
            return ep.space.as_ptr().cast();
        }
        let (unmanaged, bypass) = self
            .with_core(|core| {
                let unmanaged = add(core);
                (unmanaged, core.endpoint_bypassed(id))
            })
            .unwrap_or((false, true));
        trace_points::endpoint(id, name, unmanaged);
        let space = EndpointAddressSpace::new(
            self,
            // SAFETY: the device outlives the regions it owns.
            unsafe { self.as_object_mut_ptr() },
            TYPE_VIRTIO_IOMMU_RS_MEMORY_REGION,
            name,
            id,
            unmanaged || bypass,
        );
        let ptr = space.as_ptr().cast();
        self.endpoints.borrow_mut().push(Endpoint {
            slot,
            id,
            unmanaged,
            space,
        });
        ptr
    }

    /// The machine offers the virtio-mmio transport `transport` as
    /// endpoint `endpoint`: its device, once plugged, does DMA through
    /// this IOMMU if it was told to (`iommu_platform=on`). A device plugged
    /// already keeps the address space it got, system memory: refused if
    /// it asked for the IOMMU, which it would silently go past.
    pub(crate) fn attach_virtio_mmio(
        &self,
        transport: &VirtIOMMIOProxy,
        endpoint: u32,
    ) -> Result<()> {
        util::ensure!(
            transport.device_wants_iommu() != Some(true),
            "the virtio-mmio device {} (iommu_platform=on) was created before \
             virtio-iommu-rs and cannot use it: create the IOMMU first (-device \
             options in JSON are created after the others)",
            transport.device_id().map_or_else(
                || format!("at endpoint 0x{endpoint:x}"),
                |id| format!("'{id}'")
            )
        );
        trace_points::mmio_transport(endpoint, transport.base());
        self.mmio_transports.borrow_mut().push(MmioTransport {
            transport: NonNull::from(transport),
            endpoint,
        });
        transport.setup_iommu(self);
        Ok(())
    }

    /// Whether the device in `transport` does DMA through the IOMMU, for
    /// the device tree's `iommus` and the VIOT: it asked for its address
    /// space and `bypass-devices` does not name it.
    pub(crate) fn virtio_mmio_translated(&self, transport: &VirtIOMMIOProxy) -> bool {
        let slot = Slot::Mmio(NonNull::from(transport));
        self.endpoints
            .borrow()
            .iter()
            .any(|e| e.slot == slot && !e.unmanaged)
    }

    /// Whether the device in `transport` is described non-coherent
    /// (`noncoherent-devices` names it).
    pub(crate) fn virtio_mmio_noncoherent(&self, transport: &VirtIOMMIOProxy) -> bool {
        let id = transport.device_id();
        self.noncoherent.borrow_mut().describe(id.as_deref())
    }
}

impl PciIommu for VirtioIommu {
    /// Each device on the bus gets its own address space; the IOMMU learns
    /// its endpoints this way, as the C device does.
    fn address_space(&self, bus: &PCIBus, devfn: u8) -> *mut AddressSpace {
        let id = requester_id(bus, devfn);
        // A cold-plugged device is on its bus by now; a hot-plugged one is
        // not yet, so only its address can name it.
        let qdev_id = bus.device(devfn).and_then(|d| d.qdev_id());
        let device = PciDeviceRef {
            id: qdev_id.as_deref(),
            root_bus: bus.is_root().then(|| bus.bus_num()),
            devfn,
        };
        let name = format!("virtio-iommu-rs-{:02x}.{:x}", devfn >> 3, devfn & 7);
        let slot = Slot::Pci {
            bus: NonNull::from(bus),
            devfn,
        };
        self.endpoint_space(slot, id, &name, |core| core.add_pci_endpoint(id, &device))
    }
}

impl VirtioMmioIommu for VirtioIommu {
    /// The device being plugged into an offered transport gets its own
    /// address space, at the endpoint id the machine gave the transport.
    fn address_space(
        &self,
        transport: &VirtIOMMIOProxy,
    ) -> Option<NonNull<virtio::bindings::AddressSpace>> {
        let slot = Slot::Mmio(NonNull::from(transport));
        // Only offered transports are set up to ask.
        let id = self
            .mmio_transports
            .borrow()
            .iter()
            .find(|t| t.transport == NonNull::from(transport))?
            .endpoint;
        let qdev_id = transport.device_id();
        let name = format!("virtio-iommu-rs-mmio-{id:x}");
        NonNull::new(
            self.endpoint_space(slot, id, &name, |core| {
                core.add_mmio_endpoint(id, qdev_id.as_deref())
            })
            .cast(),
        )
    }
}

impl IommuRegionOwner for VirtioIommu {
    /// Decided on the snapshot of the core without a lock when there is
    /// one (then only a fault takes the core's lock, to queue its report),
    /// else under the core's lock.
    fn translate(&self, endpoint: u32, addr: u64, need: Perm, reader: &Reader) -> TlbEntry {
        trace_points::translate(endpoint, addr, perm_flags(need));
        let page_mask = self.granule_mask();
        let page = TlbEntry {
            iova: addr & !page_mask,
            translated_addr: addr & !page_mask,
            addr_mask: page_mask,
            perm: need,
        };
        let decided = match self.view.load(reader) {
            Some(view) => {
                let decided = view.decide(endpoint, addr, need);
                if let Translated::Fault(f) = decided {
                    self.with_core(|core| core.queue_fault(f));
                }
                Some(decided)
            }
            None => {
                let decided = self.with_core(|core| core.translate(endpoint, addr, need));
                self.note_locked_read();
                decided
            }
        };
        match decided {
            Some(Translated::Identity) | None => page,
            Some(Translated::Mapped(m)) => {
                let (iova, translated_addr, addr_mask) = m.tlb_block(addr);
                trace_points::translate_out(
                    addr,
                    translated_addr.wrapping_add(addr.wrapping_sub(iova)),
                    endpoint,
                );
                TlbEntry {
                    iova,
                    translated_addr,
                    addr_mask,
                    perm: Perm {
                        read: m.flags.read(),
                        write: m.flags.write(),
                    },
                }
            }
            Some(Translated::Fault(f)) => {
                trace_points::report_fault(f.reason as u8, f.flags, f.endpoint, f.address);
                // The event queue needs the BQL; without it (a DMA from an
                // I/O thread) the fault waits for the next delivery.
                if bql::is_locked() {
                    self.deliver_faults();
                }
                TlbEntry {
                    translated_addr: 0,
                    perm: Perm::NONE,
                    ..page
                }
            }
        }
    }

    fn mappings(&self, endpoint: u32) -> Vec<TlbEntry> {
        let events = self
            .with_core(|core| core.replay(endpoint))
            .unwrap_or_default();
        events
            .into_iter()
            .flat_map(|event| match event {
                NotifierEvent::Map {
                    iova,
                    end,
                    phys,
                    perm,
                    ..
                } => Some(block_entries(iova, end, phys, perm)),
                _ => None,
            })
            .flatten()
            .collect()
    }

    fn notify_flag_changed(
        &self,
        _endpoint: u32,
        old: IOMMUNotifierFlag,
        new: IOMMUNotifierFlag,
    ) -> Result<()> {
        if old == IOMMU_NOTIFIER_NONE {
            trace_points::notify_flag_add(c"virtio-iommu-rs");
        } else if new == IOMMU_NOTIFIER_NONE {
            trace_points::notify_flag_del(c"virtio-iommu-rs");
        }
        // As the C device: device-IOTLB (ATS) invalidations are not
        // implemented, so a notifier that needs them is refused.
        util::ensure!(
            new & IOMMU_NOTIFIER_DEVIOTLB_UNMAP == 0,
            "virtio-iommu-rs does not support dev-iotlb yet"
        );
        Ok(())
    }
}
