// SPDX-License-Identifier: GPL-2.0-or-later

//! Helpers shared by the integration tests: a device as QEMU's defaults
//! configure it, and requests as a driver would send them.

#![allow(dead_code)]

use virtio_iommu_core::config::Config;
use virtio_iommu_core::properties::{Granule, ReservedRegion};
use virtio_iommu_core::request::{Attach, Detach, Map, Probe, Request, Unmap};
use virtio_iommu_core::{Device, DeviceConfig, NotifierEvent, Response, Status};

pub const R: u32 = 1;
pub const W: u32 = 2;
pub const MMIO: u32 = 4;
pub const RW: u32 = R | W;

/// The C device's defaults (aw-bits 64, 4k pages, boot-bypass on), with
/// endpoints 1, 2 and 3 behind it.
pub fn device() -> Device {
    device_with(64, &[], true)
}

pub fn device_with(aw_bits: u8, regions: &[ReservedRegion], bypass: bool) -> Device {
    let config = Config::new(aw_bits, Granule::Size4K, 4096, bypass).unwrap();
    let mut dev = Device::new(DeviceConfig::new(&config, regions), config.bypass != 0);
    for ep in [1, 2, 3] {
        assert!(dev.add_endpoint(ep));
    }
    dev
}

pub fn attach(domain: u32, endpoint: u32) -> Vec<u8> {
    attach_flags(domain, endpoint, 0)
}

pub fn attach_flags(domain: u32, endpoint: u32, flags: u32) -> Vec<u8> {
    Request::Attach(Attach {
        domain,
        endpoint,
        flags,
        reserved: [0; 4],
    })
    .encode()
}

pub fn detach(domain: u32, endpoint: u32) -> Vec<u8> {
    Request::Detach(Detach {
        domain,
        endpoint,
        reserved: [0; 8],
    })
    .encode()
}

pub fn map(domain: u32, virt_start: u64, virt_end: u64, phys_start: u64, flags: u32) -> Vec<u8> {
    Request::Map(Map {
        domain,
        virt_start,
        virt_end,
        phys_start,
        flags,
    })
    .encode()
}

pub fn unmap(domain: u32, virt_start: u64, virt_end: u64) -> Vec<u8> {
    Request::Unmap(Unmap {
        domain,
        virt_start,
        virt_end,
        reserved: [0; 4],
    })
    .encode()
}

pub fn probe(endpoint: u32) -> Vec<u8> {
    Request::Probe(Probe {
        endpoint,
        reserved: [0; 64],
    })
    .encode()
}

/// Send a request with a 4-byte writable part; its status and events.
pub fn send(dev: &mut Device, readable: &[u8]) -> (Status, Vec<NotifierEvent>) {
    let reply = dev.handle_request(readable, 4);
    let Response::Used(bytes) = &reply.response else {
        panic!("no answer: {reply:?}");
    };
    assert_eq!(bytes.len(), 4, "a tail and nothing else");
    assert_eq!(bytes[1..], [0, 0, 0], "tail reserved bytes");
    (reply.response.status().unwrap(), reply.events)
}

pub fn status(dev: &mut Device, readable: &[u8]) -> Status {
    send(dev, readable).0
}

pub fn ok(dev: &mut Device, readable: &[u8]) -> Vec<NotifierEvent> {
    let (status, events) = send(dev, readable);
    assert_eq!(status, Status::Ok);
    events
}

pub fn map_ev(endpoint: u32, iova: u64, end: u64, phys: u64, flags: u32) -> NotifierEvent {
    NotifierEvent::Map {
        endpoint,
        iova,
        end,
        phys,
        perm: virtio_iommu_core::Perm {
            read: flags & R != 0,
            write: flags & W != 0,
        },
    }
}

pub fn unmap_ev(endpoint: u32, iova: u64, end: u64) -> NotifierEvent {
    NotifierEvent::Unmap {
        endpoint,
        iova,
        end,
    }
}

pub fn switch_ev(endpoint: u32, bypass: bool) -> NotifierEvent {
    NotifierEvent::SwitchAddressSpace { endpoint, bypass }
}
