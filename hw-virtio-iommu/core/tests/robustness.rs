// SPDX-License-Identifier: GPL-2.0-or-later

//! Whatever the driver puts in a request, the device answers without
//! panicking, and the answer has the shape the glue relies on.

use proptest::prelude::*;
use virtio_iommu_core::config::Config;
use virtio_iommu_core::properties::{Granule, ReservedRegion};
use virtio_iommu_core::{Device, DeviceConfig, Perm, Response};

fn device(probe_size: u32) -> Device {
    let config = Config::new(48, Granule::Size4K, 4096, false).unwrap();
    let mut dc = DeviceConfig::new(
        &config,
        &[ReservedRegion {
            start: 0,
            end: u64::MAX,
            kind: 0,
        }],
    );
    dc.probe_size = probe_size;
    let mut dev = Device::new(dc, false);
    for ep in 0..4 {
        dev.add_endpoint(ep);
    }
    dev
}

/// Bytes that often look like a request: a real type, small ids.
fn readable() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..96),
        (0u8..7, prop::collection::vec(0u8..4, 0..96)).prop_map(|(t, mut body)| {
            body.insert(0, t);
            body
        }),
    ]
}

proptest! {
    #[test]
    fn any_request_gets_a_well_formed_answer(
        probe_size in prop_oneof![Just(0u32), Just(24), Just(512), Just(u32::MAX)],
        steps in prop::collection::vec((readable(), 0usize..1100), 1..60),
        iovas in prop::collection::vec(any::<u64>(), 8),
    ) {
        let mut dev = device(probe_size);
        for (bytes, writable) in &steps {
            let reply = dev.handle_request(bytes, *writable);
            match &reply.response {
                Response::BadHeadTail => {
                    prop_assert!(bytes.len() < 4 || *writable < 4);
                    prop_assert!(reply.events.is_empty());
                }
                Response::Used(out) => {
                    prop_assert!(out.len() >= 4 && out.len() <= *writable);
                    prop_assert!(reply.response.status().is_some());
                    prop_assert_eq!(&out[out.len() - 3..], &[0, 0, 0]);
                }
            }
            for (ep, &iova) in iovas.iter().enumerate() {
                dev.translate(ep as u32, iova, Perm::RW);
            }
        }
        dev.reset();
    }
}
