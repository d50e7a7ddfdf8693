// SPDX-License-Identifier: GPL-2.0-or-later

//! Endpoints of the devices `bypass-devices` names: never translated, and
//! unknown to requests.

mod common;

use common::*;
use virtio_iommu_core::bypass::parse_bypass_devices;
use virtio_iommu_core::config::Config;
use virtio_iommu_core::properties::{Granule, PropertyError};
use virtio_iommu_core::{Device, DeviceConfig, PciDeviceRef, Perm, Response, Status, Translated};

/// Endpoint 0x28 (00:05.0) is unmanaged, 1 and 2 are managed, 0x30 is
/// nothing at all; boot-bypass off, so that bypass is never the default.
fn device_with_unmanaged() -> Device {
    let config = Config::new(64, Granule::Size4K, 4096, false).unwrap();
    let list = parse_bypass_devices(&["00:05.0"]).unwrap();
    let mut dev = Device::new(
        DeviceConfig::new(&config, &[]).with_bypass_devices(&list),
        false,
    );
    for (ep, devfn) in [(1, 1), (2, 2), (0x28, 0x28)] {
        dev.add_pci_endpoint(
            ep,
            &PciDeviceRef {
                id: None,
                root_bus: Some(0),
                devfn,
            },
        );
    }
    assert!(dev.is_unmanaged(0x28));
    assert!(!dev.is_unmanaged(1));
    dev
}

const UNMANAGED: u32 = 0x28;
const UNKNOWN: u32 = 0x30;

/// The full answer to a request, with a writable part large enough for PROBE.
fn answer(dev: &mut Device, readable: &[u8]) -> (Response, usize) {
    let reply = dev.handle_request(readable, 512 + 4);
    (reply.response, reply.events.len())
}

#[test]
fn requests_answer_as_for_an_unknown_endpoint() {
    let mut dev = device_with_unmanaged();
    for (unmanaged, unknown) in [
        (probe(UNMANAGED), probe(UNKNOWN)),
        (attach(1, UNMANAGED), attach(1, UNKNOWN)),
        (attach_flags(1, UNMANAGED, 1), attach_flags(1, UNKNOWN, 1)),
        (detach(1, UNMANAGED), detach(1, UNKNOWN)),
    ] {
        let got = answer(&mut dev, &unmanaged);
        assert_eq!(got, answer(&mut dev, &unknown));
        assert_eq!(got.0.status(), Some(Status::NoEnt));
        assert_eq!(got.1, 0, "no events");
    }
    // Nothing was created on its behalf.
    assert_eq!(dev.domain_ids().count(), 0);
    assert_eq!(dev.endpoint_domain(UNMANAGED), None);
    assert!(!dev.has_endpoint(UNMANAGED));

    // A managed endpoint still works; MAP into its domain reaches no
    // unmanaged endpoint.
    assert_eq!(status(&mut dev, &attach(1, 1)), Status::Ok);
    let events = ok(&mut dev, &map(1, 0x1000, 0x1fff, 0x8000, RW));
    assert_eq!(events, [map_ev(1, 0x1000, 0x1fff, 0x8000, RW)]);
    assert_eq!(answer(&mut dev, &probe(1)).0.status(), Some(Status::Ok));
}

#[test]
fn dma_is_never_translated() {
    let mut dev = device_with_unmanaged();
    assert!(dev.endpoint_bypassed(UNMANAGED));
    assert!(!dev.endpoint_bypassed(1));
    assert_eq!(
        dev.translate(UNMANAGED, 0x1234, Perm::RW),
        Translated::Identity
    );
    assert!(dev.faults().is_empty());
    // A managed endpoint faults (boot-bypass off, unattached).
    assert!(matches!(
        dev.translate(1, 0x1234, Perm::READ),
        Translated::Fault(_)
    ));

    // Global bypass on and off again, a device reset, attach attempts:
    // no address-space switch is ever asked for the unmanaged endpoint.
    let mut events = dev.set_bypass(true);
    events.extend(dev.set_bypass(false));
    events.extend(send(&mut dev, &attach(1, UNMANAGED)).1);
    events.extend(ok(&mut dev, &attach(1, 2)));
    events.extend(dev.reset());
    assert!(
        events.iter().all(|e| !matches!(e,
            virtio_iommu_core::NotifierEvent::SwitchAddressSpace { endpoint, .. } if *endpoint == UNMANAGED)),
        "{events:?}"
    );
    assert!(dev.endpoint_bypassed(UNMANAGED));
    assert_eq!(
        dev.translate(UNMANAGED, 0xfee0_0000, Perm::WRITE),
        Translated::Identity
    );
}

#[test]
fn elements_name_devices_by_id_or_root_bus_address() {
    let config = Config::new(64, Granule::Size4K, 4096, true).unwrap();
    let list = parse_bypass_devices(&["disk0", "00:05.0", "nic9"]).unwrap();
    let mut dev = Device::new(
        DeviceConfig::new(&config, &[]).with_bypass_devices(&list),
        true,
    );
    let pci = |id, root_bus, devfn| PciDeviceRef {
        id,
        root_bus,
        devfn,
    };
    // disk0 behind a root port (its bus not numbered yet): by id.
    assert!(dev.add_pci_endpoint(0x0, &pci(Some("disk0"), None, 0)));
    // 00:05.0 by address, whatever its id.
    assert!(dev.add_pci_endpoint(0x28, &pci(Some("edu"), Some(0), 0x28)));
    // Not named: managed. An address does not name a device behind a
    // bridge, even one whose bus still reads as 0.
    assert!(!dev.add_pci_endpoint(0x10, &pci(Some("nic0"), Some(0), 0x10)));
    assert!(!dev.add_pci_endpoint(0x29, &pci(None, None, 0x28)));
    assert!(dev.has_endpoint(0x10));
    assert!(dev.has_endpoint(0x29));

    // nic9 named nothing: refused at start, naming the element.
    let err = dev.check_bypass_devices().unwrap_err();
    assert_eq!(
        err,
        PropertyError::BypassDeviceUnmatched {
            index: 2,
            text: "nic9".into()
        }
    );
    assert!(err
        .to_string()
        .starts_with("bypass-devices element 2 'nic9' names no device"));
    assert!(dev.add_pci_endpoint(0x100, &pci(Some("nic9"), None, 0)));
    assert_eq!(dev.check_bypass_devices(), Ok(()));

    // An empty list names nothing and needs nothing.
    let plain = Device::new(DeviceConfig::new(&config, &[]), true);
    assert_eq!(plain.check_bypass_devices(), Ok(()));
}

#[test]
fn a_managed_endpoint_with_the_same_id_wins() {
    let mut dev = device_with_unmanaged();
    // Before the firmware numbers a bridge's bus, a device behind it can
    // have the id of a device on the root bus.
    assert!(dev.add_endpoint(UNMANAGED));
    assert!(!dev.is_unmanaged(UNMANAGED));
    assert_eq!(status(&mut dev, &attach(1, UNMANAGED)), Status::Ok);
    // Once the glue has told them apart, the unmanaged one is back.
    dev.remove_endpoint(UNMANAGED);
    assert!(!dev.is_unmanaged(UNMANAGED), "remove forgets both");
    assert!(dev.add_unmanaged_endpoint(UNMANAGED));
    assert!(dev.is_unmanaged(UNMANAGED));
    assert_eq!(
        answer(&mut dev, &probe(UNMANAGED)).0.status(),
        Some(Status::NoEnt)
    );
}

/// The question firmware tables ask before any endpoint exists, without
/// registering anything or counting an element as matched.
#[test]
fn names_unmanaged_asks_the_property() {
    let config = Config::new(64, Granule::Size4K, 4096, false).unwrap();
    let list = parse_bypass_devices(&["00:05.0", "disk"]).unwrap();
    let dev = Device::new(
        DeviceConfig::new(&config, &[]).with_bypass_devices(&list),
        false,
    );
    let at = |id, root_bus, devfn| PciDeviceRef {
        id,
        root_bus,
        devfn,
    };
    assert!(dev.names_unmanaged(&at(None, Some(0), 0x28)));
    assert!(dev.names_unmanaged(&at(Some("disk"), None, 0)));
    assert!(!dev.names_unmanaged(&at(None, None, 0x28)));
    assert!(!dev.names_unmanaged(&at(Some("net"), Some(0), 0x30)));
    assert!(!dev.has_endpoint(0x28));
    assert!(dev.check_bypass_devices().is_err());
}
