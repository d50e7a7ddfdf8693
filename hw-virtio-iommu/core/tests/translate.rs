// SPDX-License-Identifier: GPL-2.0-or-later

//! `Device::translate` and the fault reports it queues.

mod common;

use common::*;
use virtio_iommu_core::fault::{FAULT_F_ADDRESS, FAULT_F_READ, FAULT_F_WRITE, FAULT_SIZE};
use virtio_iommu_core::properties::ReservedRegion;
use virtio_iommu_core::{Fault, FaultDelivery, FaultReason, Perm, Translated};

fn fault(reason: FaultReason, flags: u32, endpoint: u32, address: u64) -> Translated {
    Translated::Fault(Fault {
        reason,
        flags: flags | FAULT_F_ADDRESS,
        endpoint,
        address,
    })
}

#[test]
fn unattached_endpoints_follow_the_config_bypass() {
    let mut dev = device();
    assert_eq!(dev.translate(1, 0x1234, Perm::READ), Translated::Identity);
    dev.set_bypass(false);
    assert_eq!(
        dev.translate(1, 0x1234, Perm::WRITE),
        fault(FaultReason::Unknown, 0, 1, 0x1234),
        "C reports UNKNOWN: it has no record of unattached endpoints"
    );
    assert_eq!(dev.faults().len(), 1);
}

#[test]
fn mapped_addresses_translate_and_others_fault() {
    let mut dev = device();
    ok(&mut dev, &attach(1, 1));
    ok(&mut dev, &map(1, 0x1000, 0x1fff, 0xa000, RW));
    let Translated::Mapped(m) = dev.translate(1, 0x1abc, Perm::RW) else {
        panic!("not mapped")
    };
    assert_eq!(m.phys(0x1abc), 0xaabc);
    assert_eq!((m.virt_start, m.virt_end), (0x1000, 0x1fff));
    assert_eq!(
        dev.translate(1, 0x2000, Perm::READ),
        fault(FaultReason::Mapping, 0, 1, 0x2000)
    );
}

#[test]
fn difference_the_address_before_a_mapping_is_not_mapped() {
    // C looks up [addr, addr + 1], which overlaps a mapping starting at
    // addr + 1, and would translate 0xfff to 0xa000 - 1.
    let mut dev = device();
    ok(&mut dev, &attach(1, 1));
    ok(&mut dev, &map(1, 0x1000, 0x1fff, 0xa000, RW));
    assert_eq!(
        dev.translate(1, 0xfff, Perm::READ),
        fault(FaultReason::Mapping, 0, 1, 0xfff)
    );
}

#[test]
fn permissions() {
    let mut dev = device();
    ok(&mut dev, &attach(1, 1));
    ok(&mut dev, &map(1, 0, 0xfff, 0, R));
    ok(&mut dev, &map(1, 0x1000, 0x1fff, 0, W));
    ok(&mut dev, &map(1, 0x2000, 0x2fff, 0, 0));
    assert!(matches!(
        dev.translate(1, 0x10, Perm::READ),
        Translated::Mapped(_)
    ));
    assert_eq!(
        dev.translate(1, 0x10, Perm::WRITE),
        fault(FaultReason::Mapping, FAULT_F_WRITE, 1, 0x10)
    );
    assert_eq!(
        dev.translate(1, 0x1010, Perm::READ),
        fault(FaultReason::Mapping, FAULT_F_READ, 1, 0x1010)
    );
    assert_eq!(
        dev.translate(1, 0x2010, Perm::RW),
        fault(
            FaultReason::Mapping,
            FAULT_F_READ | FAULT_F_WRITE,
            1,
            0x2010
        )
    );
}

#[test]
fn reserved_regions_come_before_mappings() {
    let regions = [
        ReservedRegion {
            start: 0xfee0_0000,
            end: 0xfeef_ffff,
            kind: 1,
        },
        ReservedRegion {
            start: 0x8000,
            end: 0x8fff,
            kind: 0,
        },
    ];
    let mut dev = device_with(64, &regions, true);
    ok(&mut dev, &attach(1, 1));
    ok(&mut dev, &map(1, 0x8000, 0x8fff, 0x1000, RW));
    assert_eq!(
        dev.translate(1, 0xfee0_0040, Perm::WRITE),
        Translated::Identity
    );
    assert_eq!(
        dev.translate(1, 0x8010, Perm::READ),
        fault(FaultReason::Mapping, 0, 1, 0x8010)
    );
    assert_eq!(
        dev.translate(1, 0xfef0_0000, Perm::READ),
        fault(FaultReason::Mapping, 0, 1, 0xfef0_0000)
    );
    // Unattached endpoints do not look at them (bypass is on here).
    assert_eq!(dev.translate(2, 0x8010, Perm::READ), Translated::Identity);
}

#[test]
fn bypass_domains_are_identity() {
    let mut dev = device_with(64, &[], false);
    ok(&mut dev, &attach_flags(1, 1, 1));
    assert_eq!(
        dev.translate(1, u64::MAX, Perm::WRITE),
        Translated::Identity
    );
}

#[test]
fn difference_top_address() {
    // C looks up [u64::MAX, 0], which only matches a mapping starting at 0.
    let mut dev = device();
    ok(&mut dev, &attach(1, 1));
    assert!(matches!(
        dev.translate(1, u64::MAX, Perm::READ),
        Translated::Fault(_)
    ));
    ok(&mut dev, &map(1, u64::MAX, u64::MAX, 0x42, R));
    let Translated::Mapped(m) = dev.translate(1, u64::MAX, Perm::READ) else {
        panic!()
    };
    assert_eq!(m.phys(u64::MAX), 0x42);
}

#[test]
fn faults_are_delivered_in_order() {
    let mut dev = device_with(64, &[], false);
    dev.translate(1, 0x10, Perm::READ);
    dev.translate(2, 0x20, Perm::READ);
    let Some(FaultDelivery::Write(bytes)) = dev.faults().deliver(FAULT_SIZE) else {
        panic!()
    };
    assert_eq!(
        Fault::from_bytes(&bytes),
        Some(Fault {
            reason: FaultReason::Unknown,
            flags: FAULT_F_ADDRESS,
            endpoint: 1,
            address: 0x10
        })
    );
    assert_eq!(bytes[0..4], [0, 0, 0, 0]);
    assert_eq!(bytes[4..8], [0, 1, 0, 0], "ADDRESS is bit 8");
    assert_eq!(dev.faults().deliver(8), Some(FaultDelivery::BufferTooSmall));
    assert_eq!(dev.faults().deliver(64), None);
    dev.translate(1, 0x10, Perm::READ);
    dev.reset();
    assert!(dev.faults().is_empty(), "reset drops pending faults");
}
