// SPDX-License-Identifier: GPL-2.0-or-later

//! Bytes in, responses out: the input is cut into request-queue elements
//! that go through `Device::handle_request` one after the other, with
//! translations in between, as a driver (or a malicious guest) would send
//! them. Any panic is a bug; so is an answer larger than the driver's
//! buffer or a status outside the spec's.

#![no_main]

use libfuzzer_sys::fuzz_target;
use virtio_iommu_core::{
    config::Config,
    properties::{Granule, ReservedRegion},
    Device, DeviceConfig, Perm, Response,
};

fuzz_target!(|data: &[u8]| {
    let config = Config::new(48, Granule::Size4K, 4096, true).unwrap();
    let regions = [ReservedRegion {
        start: 0xfee0_0000,
        end: 0xfeef_ffff,
        kind: 1,
    }];
    let mut dev = Device::new(DeviceConfig::new(&config, &regions), true);
    for ep in [0, 8, 0x10, 0xffff_ffff] {
        dev.add_endpoint(ep);
    }

    // Each element: [len, writable_hi, writable_lo, bytes...].
    let mut rest = data;
    while let [len, w_hi, w_lo, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (readable, next) = tail.split_at(len);
        rest = next;
        let writable_len = usize::from(u16::from_be_bytes([*w_hi, *w_lo]));

        let reply = dev.handle_request(readable, writable_len);
        if let Response::Used(bytes) = &reply.response {
            assert!(bytes.len() <= writable_len, "answer overflows the buffer");
            assert!(reply.response.status().is_some(), "no valid status");
        }
        // Translate a few addresses the request named, to exercise lookup
        // on whatever state it left.
        if let Some(chunk) = readable.get(8..16) {
            let iova = u64::from_le_bytes(chunk.try_into().unwrap());
            for ep in [8, 0x10] {
                let _ = dev.translate(ep, iova, Perm::READ);
                let _ = dev.translate(ep, iova.wrapping_add(0xfff), Perm::WRITE);
            }
        }
    }
});
