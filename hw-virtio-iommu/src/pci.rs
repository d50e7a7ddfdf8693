// SPDX-License-Identifier: GPL-2.0-or-later

//! `virtio-iommu-rs`: the virtio-pci proxy users plug into the machine.

use std::{
    ffi::CStr,
    mem::{offset_of, ManuallyDrop, MaybeUninit},
    ptr::addr_of,
};

use common::{uninit_field_mut, Zeroable};
use hwcore::{
    bindings::{qdev_prop_uint32, DeviceCategory, Property},
    DeviceImpl, DevicePropertiesImpl, ResettablePhasesImpl,
};
use pci::{PCIDevice, PCIDeviceImpl, PCIDeviceMethods};
use qom::{prelude::*, ObjectImpl, ParentField};
use util::{ensure, Result};
use virtio::{
    bindings::VirtIOPCIProxy as RawProxy, interface, VirtIOIOMMUPCIInterfaceClass, VirtIOMMIOProxy,
    VirtIOPCIProxy, VirtIOPCIProxyMethods, VirtioIommuPciInterface, VirtioPCIClass,
    VirtioPciProxyImpl, CONVENTIONAL_PCI_DEVICE, END_OF_INTERFACES, PCIE_DEVICE,
    TYPE_VIRTIO_IOMMU_PCI_INTERFACE,
};

use crate::{device::VirtioIommu, TYPE_VIRTIO_IOMMU_RS};

/// `VIRTIO_PCI_ABI_VERSION`, the PCI revision of virtio devices.
const VIRTIO_PCI_ABI_VERSION: u8 = 1;
/// `PCI_CLASS_OTHERS`, the class the C device reports.
const PCI_CLASS_OTHERS: u16 = 0xff;

/// The PCI device: a virtio-pci proxy embedding the backend.
#[repr(C)]
#[derive(qom::Object)]
pub struct VirtioIommuPci {
    parent_obj: ParentField<VirtIOPCIProxy>,
    /// Initialized, and finalized, by QOM as a child object of the proxy.
    vdev: ManuallyDrop<VirtioIommu>,
}

impl VirtioIommuPci {
    fn realize(&self) -> Result<()> {
        // Like the C device: without the machine's pre-plug and plug hooks
        // nothing would give it its MSI region or describe it to firmware.
        ensure!(
            self.has_machine_hotplug_handler(),
            "Check your machine implements a hotplug handler for the virtio-iommu-rs device"
        );
        // The IOMMU translates for the devices of its own bus, which must
        // be the root bus.
        let bus = self.bus();
        ensure!(
            bus.is_root(),
            "virtio-iommu-rs must be plugged on the root bus"
        );
        self.vdev.set_primary_bus(bus);
        self.force_virtio_1();
        self.realize_backend(self.vdev.upcast())
    }

    fn class_init(klass: &mut VirtioPCIClass) {
        klass.class_init::<Self>();
        let dc = &mut klass.parent_class.parent_class;
        // The IOMMU of a bus cannot come and go under its endpoints.
        dc.hotpluggable = false;
        let misc = DeviceCategory::DEVICE_CATEGORY_MISC as usize;
        dc.categories[misc / 64] |= 1 << (misc % 64);
        qom_props::describe_class_property::<Self>(
            klass,
            c"class",
            c"PCI class code the device reports; 0 (the default) keeps its own, \
              0x00ff (other), as the C device",
        );
        qom_props::add_class_property::<Self, EndpointsProperty>(klass);
        qom_props::add_class_property::<Self, DomainsProperty>(klass);
        qom_props::add_class_property::<Self, CountersProperty>(klass);

        // The virtio-iommu interface's methods, asked by the machine (its
        // device tree and ACPI tables).
        VirtIOIOMMUPCIInterfaceClass::cast::<Self>(klass).class_init::<Self>();
    }
}

impl VirtioIommuPciInterface for VirtioIommuPci {
    const VIRTIO_MMIO: bool = true;

    /// Whether `dev` is one of the devices `bypass-devices` named, which
    /// the VIOT leaves out.
    fn pci_device_bypassed(&self, dev: &PCIDevice) -> bool {
        self.vdev.pci_device_bypassed(dev)
    }

    fn attach_virtio_mmio(&self, transport: &VirtIOMMIOProxy, endpoint: u32) -> Result<()> {
        self.vdev.attach_virtio_mmio(transport, endpoint)
    }

    fn virtio_mmio_translated(&self, transport: &VirtIOMMIOProxy) -> bool {
        self.vdev.virtio_mmio_translated(transport)
    }

    fn virtio_mmio_noncoherent(&self, transport: &VirtIOMMIOProxy) -> bool {
        self.vdev.virtio_mmio_noncoherent(transport)
    }
}

/// `qom-get` of `endpoints`: every device behind the IOMMU.
struct EndpointsProperty;

impl qom_props::JsonProperty<VirtioIommuPci> for EndpointsProperty {
    const NAME: &'static CStr = c"endpoints";
    const TYPE: &'static CStr = c"virtio-iommu-rs-endpoints";
    const DESCRIPTION: &'static CStr = c"The devices behind the IOMMU (read-only): \
        endpoint id, bus (pci or virtio-mmio), address, qdev id, attached domain, \
        whether bypass-devices names it, where its DMA goes now (address-space: iommu \
        or bypass), and how its DMA is described (coherent or non-coherent)";

    fn value(obj: &VirtioIommuPci) -> String {
        obj.vdev.endpoints_json()
    }
}

/// `qom-get` of `domains`: the domains, their endpoints and mappings.
struct DomainsProperty;

impl qom_props::JsonProperty<VirtioIommuPci> for DomainsProperty {
    const NAME: &'static CStr = c"domains";
    const TYPE: &'static CStr = c"virtio-iommu-rs-domains";
    const DESCRIPTION: &'static CStr = c"The domains (read-only): id, bypass, attached \
        endpoints, number of mappings and the first 64 mappings (iova, end, phys, flags)";

    fn value(obj: &VirtioIommuPci) -> String {
        obj.vdev.domains_json()
    }
}

/// `qom-get` of `counters`: what the device has done.
struct CountersProperty;

impl qom_props::JsonProperty<VirtioIommuPci> for CountersProperty {
    const NAME: &'static CStr = c"counters";
    const TYPE: &'static CStr = c"virtio-iommu-rs-counters";
    const DESCRIPTION: &'static CStr = c"What the device has done (read-only): requests \
        by type and status, malformed chains, faults raised and dropped, IOMMU notifier \
        calls, address space switches";

    fn value(obj: &VirtioIommuPci) -> String {
        obj.vdev.counters_json()
    }
}

qom_isa!(VirtioIommuPci: VirtIOPCIProxy, pci::PCIDevice, hwcore::DeviceState, Object);

// SAFETY: TYPE_NAME is unique, and the struct starts with its parent.
unsafe impl ObjectType for VirtioIommuPci {
    type Class = VirtioPCIClass;
    const TYPE_NAME: &'static CStr = TYPE_VIRTIO_IOMMU_RS;
}

impl ObjectImpl for VirtioIommuPci {
    type ParentType = VirtIOPCIProxy;
    const TYPE_INFO: qom::bindings::TypeInfo = Self::VIRTIO_PCI_TYPE_INFO;
    const CLASS_INIT: fn(&mut Self::Class) = Self::class_init;
}

// SAFETY: "class" is virtio-pci's uint32_t class_code field, as for the C
// device; the backend's properties are aliased onto the proxy by QOM.
unsafe impl DevicePropertiesImpl for VirtioIommuPci {
    const PROPERTIES: &'static [Property] = &[Property {
        name: c"class".as_ptr(),
        info: addr_of!(qdev_prop_uint32),
        offset: offset_of!(RawProxy, class_code) as isize,
        set_default: true,
        ..Zeroable::ZERO
    }];
}

impl ResettablePhasesImpl for VirtioIommuPci {}

impl DeviceImpl for VirtioIommuPci {}

impl PCIDeviceImpl for VirtioIommuPci {
    const REVISION: Option<u8> = Some(VIRTIO_PCI_ABI_VERSION);
    const CLASS_ID: Option<u16> = Some(PCI_CLASS_OTHERS);
}

impl VirtioPciProxyImpl for VirtioIommuPci {
    const VIRTIO_PCI_REALIZE: fn(&Self) -> Result<()> = Self::realize;
    const INTERFACES: &'static [qom::bindings::InterfaceInfo] = &[
        PCIE_DEVICE,
        CONVENTIONAL_PCI_DEVICE,
        interface(TYPE_VIRTIO_IOMMU_PCI_INTERFACE),
        END_OF_INTERFACES,
    ];
    type Backend = VirtioIommu;

    fn backend_field(this: &mut MaybeUninit<Self>) -> *mut MaybeUninit<VirtioIommu> {
        uninit_field_mut!(*this, vdev).as_mut_ptr().cast()
    }
}
