// SPDX-License-Identifier: GPL-2.0-or-later

//! Every status of every request, through `Device::handle_request` with
//! the bytes a driver sends. Tests named `difference_*` pin the deliberate
//! differences from QEMU's C device (docs/requests.md).

mod common;

use common::*;
use virtio_iommu_core::properties::ReservedRegion;
use virtio_iommu_core::request::{Attach, Request, HEAD_SIZE, T_PROBE};
use virtio_iommu_core::reserved::parse_properties;
use virtio_iommu_core::{Response, Status};

// --- framing ------------------------------------------------------------

#[test]
fn no_head_or_no_room_for_a_tail_is_a_driver_error() {
    let mut dev = device();
    let req = attach(1, 1);
    for len in 0..HEAD_SIZE {
        let reply = dev.handle_request(&req[..len], 4);
        assert_eq!(reply.response, Response::BadHeadTail, "readable {len}");
        assert!(reply.events.is_empty());
    }
    for writable in 0..4 {
        let reply = dev.handle_request(&req, writable);
        assert_eq!(reply.response, Response::BadHeadTail, "writable {writable}");
        assert_eq!(reply.response.status(), None);
    }
    assert_eq!(dev.endpoint_domain(1), None, "nothing was done");
}

#[test]
fn unknown_type_is_unsupp() {
    let mut dev = device();
    for kind in [0u8, 6, 0x80, 0xff] {
        let mut req = attach(1, 1);
        req[0] = kind;
        assert_eq!(status(&mut dev, &req), Status::Unsupp);
        assert_eq!(status(&mut dev, &req[..4]), Status::Unsupp, "bare head");
    }
    assert_eq!(dev.endpoint_domain(1), None);
}

#[test]
fn truncated_bodies_are_inval_and_do_nothing() {
    let mut dev = device();
    ok(&mut dev, &attach(1, 1));
    ok(&mut dev, &map(1, 0, 0xfff, 0, RW));
    let reqs = [
        attach(2, 2),
        detach(1, 1),
        map(1, 0x1000, 0x1fff, 0, RW),
        unmap(1, 0, 0xfff),
    ];
    for req in &reqs {
        for len in HEAD_SIZE..req.len() {
            assert_eq!(status(&mut dev, &req[..len]), Status::Inval, "{len}");
        }
    }
    assert_eq!(dev.endpoint_domain(1), Some(1));
    assert_eq!(dev.endpoint_domain(2), None);
    assert_eq!(dev.mappings(1).unwrap().len(), 1);
}

#[test]
fn trailing_bytes_are_ignored() {
    let mut dev = device();
    let mut req = attach(1, 1);
    req.extend_from_slice(&[0xff; 100]);
    ok(&mut dev, &req);
    let mut req = map(1, 0, 0xfff, 0, RW);
    req.push(1);
    ok(&mut dev, &req);
    assert!(dev.lookup(1, 0).is_some());
}

#[test]
fn the_answer_is_the_tail_alone_whatever_the_room() {
    let mut dev = device();
    let reply = dev.handle_request(&attach(1, 1), 4096);
    assert_eq!(reply.response, Response::Used(vec![0, 0, 0, 0]));
}

#[test]
fn head_reserved_bytes_are_ignored() {
    let mut dev = device();
    let mut req = attach(1, 1);
    req[1..4].copy_from_slice(&[1, 2, 3]);
    ok(&mut dev, &req);
}

#[test]
fn big_endian_fields_mean_other_ids() {
    let mut dev = device();
    // Endpoint 1 written big-endian is endpoint 0x01000000: unknown.
    let mut req = attach(1, 0);
    req[8..12].copy_from_slice(&1u32.to_be_bytes());
    assert_eq!(status(&mut dev, &req), Status::NoEnt);
    // Domain 1 written big-endian is domain 0x01000000.
    let mut req = attach(0, 1);
    req[4..8].copy_from_slice(&1u32.to_be_bytes());
    ok(&mut dev, &req);
    assert_eq!(dev.endpoint_domain(1), Some(0x0100_0000));
    // A big-endian virt_end of 0x1fff is 0xff1f << 48: far above.
    let mut req = map(0x0100_0000, 0x1000, 0, 0, RW);
    req[16..24].copy_from_slice(&0x1fffu64.to_be_bytes());
    ok(&mut dev, &req);
    let m = dev.lookup(0x0100_0000, 0x1000).unwrap();
    assert_eq!(m.virt_end, 0xff1f_0000_0000_0000);
}

// --- ATTACH -------------------------------------------------------------

#[test]
fn attach_creates_the_domain() {
    let mut dev = device();
    let events = ok(&mut dev, &attach(7, 1));
    assert_eq!(events, [switch_ev(1, false)]);
    assert_eq!(dev.endpoint_domain(1), Some(7));
    assert_eq!(dev.domain_bypass(7), Some(false));
    assert_eq!(dev.domain_endpoints(7), [1]);
    assert!(!dev.endpoint_bypassed(1));
}

#[test]
fn attach_unknown_flags_is_inval() {
    let mut dev = device();
    for flags in [2, 3, 0x100, 0x8000_0000] {
        assert_eq!(status(&mut dev, &attach_flags(1, 1, flags)), Status::Inval);
        // Checked before the endpoint.
        assert_eq!(status(&mut dev, &attach_flags(1, 99, flags)), Status::Inval);
    }
    assert_eq!(dev.domain_ids().count(), 0);
}

#[test]
fn attach_unknown_endpoint_is_noent() {
    let mut dev = device();
    for ep in [0, 4, 0x1_0001, u32::MAX] {
        assert_eq!(status(&mut dev, &attach(1, ep)), Status::NoEnt);
    }
    assert_eq!(dev.domain_ids().count(), 0, "no domain was created");
    dev.add_endpoint(u32::MAX);
    ok(&mut dev, &attach(1, u32::MAX));
}

#[test]
fn attach_domain_ids_span_u32() {
    let mut dev = device();
    ok(&mut dev, &attach(0, 1));
    ok(&mut dev, &attach(u32::MAX, 2));
    ok(&mut dev, &map(u32::MAX, 0, 0xfff, 0x5000, RW));
    assert_eq!(dev.domain_ids().collect::<Vec<_>>(), [0, u32::MAX]);
    assert_eq!(dev.lookup(u32::MAX, 0x10).unwrap().phys(0x10), 0x5010);
    ok(&mut dev, &detach(u32::MAX, 2));
    assert_eq!(dev.domain_ids().collect::<Vec<_>>(), [0]);
}

#[test]
fn attach_to_a_domain_replays_its_mappings() {
    let mut dev = device();
    ok(&mut dev, &attach(1, 1));
    ok(&mut dev, &map(1, 0x1000, 0x1fff, 0xa000, R));
    ok(&mut dev, &map(1, 0x3000, 0x3fff, 0xb000, MMIO | RW));
    ok(&mut dev, &map(1, 0x5000, 0x5fff, 0xc000, 0));
    ok(&mut dev, &map(1, 0x7000, 0x7fff, 0xd000, W));
    let events = ok(&mut dev, &attach(1, 2));
    // MMIO and no-access mappings are not notified, as in C.
    assert_eq!(
        events,
        [
            switch_ev(2, false),
            map_ev(2, 0x1000, 0x1fff, 0xa000, R),
            map_ev(2, 0x7000, 0x7fff, 0xd000, W),
        ]
    );
    // Newest first: C inserts at the head of the domain's list.
    assert_eq!(dev.domain_endpoints(1), [2, 1]);
    assert_eq!(dev.replay(2), events[1..]);
}

#[test]
fn attach_moves_the_endpoint_and_frees_the_emptied_domain() {
    let mut dev = device();
    ok(&mut dev, &attach(1, 1));
    ok(&mut dev, &map(1, 0x1000, 0x1fff, 0xa000, RW));
    ok(&mut dev, &attach(2, 2));
    ok(&mut dev, &map(2, 0x4000, 0x4fff, 0xe000, RW));
    let events = ok(&mut dev, &attach(2, 1));
    assert_eq!(
        events,
        [
            unmap_ev(1, 0x1000, 0x1fff),
            switch_ev(1, true),
            switch_ev(1, false),
            map_ev(1, 0x4000, 0x4fff, 0xe000, RW),
        ]
    );
    assert_eq!(dev.domain_bypass(1), None, "domain 1 was freed");
    assert_eq!(dev.domain_endpoints(2), [1, 2]);
    // Domain 1 comes back empty.
    ok(&mut dev, &attach(1, 3));
    assert!(dev.mappings(1).unwrap().is_empty());
}

#[test]
fn attach_moving_from_a_shared_domain_keeps_it() {
    let mut dev = device();
    ok(&mut dev, &attach(1, 1));
    ok(&mut dev, &attach(1, 2));
    ok(&mut dev, &map(1, 0, 0xfff, 0, RW));
    ok(&mut dev, &attach(2, 1));
    assert_eq!(dev.domain_endpoints(1), [2]);
    assert!(dev.lookup(1, 0).is_some());
}

#[test]
fn reattach_to_the_same_domain_alone_empties_it_as_in_c() {
    // C detaches first, frees the emptied domain with its mappings, then
    // creates it anew.
    let mut dev = device();
    ok(&mut dev, &attach(1, 1));
    ok(&mut dev, &map(1, 0, 0xfff, 0, RW));
    let events = ok(&mut dev, &attach(1, 1));
    assert_eq!(
        events,
        [
            unmap_ev(1, 0, 0xfff),
            switch_ev(1, true),
            switch_ev(1, false)
        ]
    );
    assert!(dev.mappings(1).unwrap().is_empty());

    // With another endpoint there, the domain and its mappings stay.
    ok(&mut dev, &map(1, 0, 0xfff, 0, RW));
    ok(&mut dev, &attach(1, 2));
    let events = ok(&mut dev, &attach(1, 1));
    assert_eq!(
        events,
        [
            unmap_ev(1, 0, 0xfff),
            switch_ev(1, true),
            switch_ev(1, false),
            map_ev(1, 0, 0xfff, 0, RW)
        ]
    );
}

#[test]
fn domain_endpoints_are_newest_first_as_in_c() {
    // C's ATTACH inserts at the head of the domain's endpoint list, after
    // detaching the endpoint: attaching again moves it to the front. The
    // order is migrated, and orders the events of MAP, UNMAP and reset.
    let mut dev = device();
    ok(&mut dev, &attach(1, 2));
    ok(&mut dev, &attach(1, 1));
    ok(&mut dev, &attach(1, 3));
    assert_eq!(dev.domain_endpoints(1), [3, 1, 2]);
    ok(&mut dev, &attach(1, 2));
    assert_eq!(dev.domain_endpoints(1), [2, 3, 1]);
    ok(&mut dev, &detach(1, 3));
    assert_eq!(dev.domain_endpoints(1), [2, 1]);
    ok(&mut dev, &attach(1, 3));
    assert_eq!(dev.domain_endpoints(1), [3, 2, 1]);
}

#[test]
fn bypass_domains() {
    let mut dev = device_with(64, &[], false);
    let events = ok(&mut dev, &attach_flags(5, 1, 1));
    assert_eq!(events, [switch_ev(1, true)]);
    assert_eq!(dev.domain_bypass(5), Some(true));
    assert!(dev.endpoint_bypassed(1));
    ok(&mut dev, &attach_flags(5, 2, 1));
    assert_eq!(status(&mut dev, &map(5, 0, 0xfff, 0, RW)), Status::Inval);
    assert_eq!(status(&mut dev, &unmap(5, 0, 0xfff)), Status::Inval);
    let events = ok(&mut dev, &detach(5, 1));
    assert_eq!(events, [switch_ev(1, false)], "back to config bypass (off)");
}

#[test]
fn bypass_flag_mismatch_is_inval() {
    let mut dev = device();
    ok(&mut dev, &attach(1, 1));
    assert_eq!(status(&mut dev, &attach_flags(1, 2, 1)), Status::Inval);
    assert_eq!(dev.endpoint_domain(2), None);
    ok(&mut dev, &attach_flags(2, 2, 1));
    assert_eq!(status(&mut dev, &attach(2, 3)), Status::Inval);
    assert_eq!(dev.endpoint_domain(3), None);
}

#[test]
fn difference_failed_attach_leaves_the_endpoint_where_it_was() {
    let mut dev = device();
    ok(&mut dev, &attach(1, 1));
    ok(&mut dev, &map(1, 0, 0xfff, 0, RW));
    ok(&mut dev, &attach_flags(2, 2, 1));
    // C: detaches endpoint 1 (freeing domain 1 and its mapping), then
    // answers INVAL with the endpoint attached nowhere.
    let (status, events) = send(&mut dev, &attach(2, 1));
    assert_eq!(status, Status::Inval);
    assert_eq!(events, []);
    assert_eq!(dev.endpoint_domain(1), Some(1));
    assert!(dev.lookup(1, 0).is_some());
}

#[test]
fn bypass_flag_change_on_the_endpoints_own_domain_succeeds_as_in_c() {
    // Alone in its domain, the endpoint's detach frees it, so C creates
    // the domain again with the new kind.
    let mut dev = device();
    ok(&mut dev, &attach(1, 1));
    ok(&mut dev, &map(1, 0, 0xfff, 0, RW));
    ok(&mut dev, &attach_flags(1, 1, 1));
    assert_eq!(dev.domain_bypass(1), Some(true));
    // Not when someone else keeps it alive.
    ok(&mut dev, &attach_flags(1, 2, 1));
    assert_eq!(status(&mut dev, &attach(1, 1)), Status::Inval);
    assert_eq!(dev.endpoint_domain(1), Some(1));
}

#[test]
fn difference_attach_reserved_bytes_must_be_zero() {
    let mut dev = device();
    for reserved in [[1, 0, 0, 0], [0, 0, 0, 0x80]] {
        let req = Request::Attach(Attach {
            domain: 1,
            endpoint: 1,
            flags: 0,
            reserved,
        })
        .encode();
        assert_eq!(status(&mut dev, &req), Status::Inval);
    }
    assert_eq!(dev.endpoint_domain(1), None);
}

#[test]
fn attach_outside_the_domain_range_is_range() {
    use virtio_iommu_core::config::Config;
    use virtio_iommu_core::properties::Granule;
    use virtio_iommu_core::{Device, DeviceConfig};
    // The C device always advertises all of u32; a narrower range is only
    // reachable through DeviceConfig.
    let config = Config::new(64, Granule::Size4K, 4096, true).unwrap();
    let mut dc = DeviceConfig::new(&config, &[]);
    (dc.domain_start, dc.domain_end) = (10, 20);
    let mut dev = Device::new(dc, true);
    dev.add_endpoint(1);
    assert_eq!(status(&mut dev, &attach(9, 1)), Status::Range);
    assert_eq!(status(&mut dev, &attach(21, 1)), Status::Range);
    ok(&mut dev, &attach(10, 1));
    ok(&mut dev, &attach(20, 1));
}

// --- DETACH -------------------------------------------------------------

#[test]
fn detach_unknown_or_unattached_endpoint_is_noent() {
    let mut dev = device();
    assert_eq!(status(&mut dev, &detach(1, 99)), Status::NoEnt);
    // Registered but never attached: C has no record of it either.
    assert_eq!(status(&mut dev, &detach(1, 1)), Status::NoEnt);
    ok(&mut dev, &attach(1, 1));
    ok(&mut dev, &detach(1, 1));
    assert_eq!(status(&mut dev, &detach(1, 1)), Status::NoEnt, "twice");
}

#[test]
fn detach_from_another_domain_is_inval() {
    let mut dev = device();
    ok(&mut dev, &attach(1, 1));
    ok(&mut dev, &attach(2, 2));
    assert_eq!(status(&mut dev, &detach(2, 1)), Status::Inval);
    assert_eq!(status(&mut dev, &detach(3, 1)), Status::Inval);
    assert_eq!(dev.endpoint_domain(1), Some(1));
}

#[test]
fn detach_unmaps_and_frees_the_last_domain() {
    let mut dev = device();
    ok(&mut dev, &attach(1, 1));
    ok(&mut dev, &attach(1, 2));
    ok(&mut dev, &map(1, 0x1000, 0x1fff, 0, RW));
    ok(&mut dev, &map(1, 0x3000, 0x3fff, 0, MMIO));
    let events = ok(&mut dev, &detach(1, 1));
    assert_eq!(
        events,
        [
            unmap_ev(1, 0x1000, 0x1fff),
            unmap_ev(1, 0x3000, 0x3fff),
            switch_ev(1, true)
        ]
    );
    assert_eq!(dev.domain_endpoints(1), [2]);
    let mut req = detach(1, 2);
    req[12..20].copy_from_slice(&[0xff; 8]); // reserved: ignored
    ok(&mut dev, &req);
    assert_eq!(dev.domain_bypass(1), None);
    assert_eq!(status(&mut dev, &map(1, 0, 0, 0, R)), Status::NoEnt);
}

// --- MAP ----------------------------------------------------------------

#[test]
fn map_notifies_every_endpoint_of_the_domain() {
    let mut dev = device();
    ok(&mut dev, &attach(1, 1));
    ok(&mut dev, &attach(1, 3));
    let events = ok(&mut dev, &map(1, 0x1000, 0x1fff, 0xa000, RW));
    // In the domain's list order, newest attached first, as in C.
    assert_eq!(
        events,
        [
            map_ev(3, 0x1000, 0x1fff, 0xa000, RW),
            map_ev(1, 0x1000, 0x1fff, 0xa000, RW)
        ]
    );
    let m = dev.lookup(1, 0x1800).unwrap();
    assert_eq!((m.phys(0x1800), m.flags.bits()), (0xa800, RW));
    assert_eq!(ok(&mut dev, &map(1, 0x2000, 0x2fff, 0, MMIO | RW)), []);
    assert_eq!(ok(&mut dev, &map(1, 0x3000, 0x3fff, 0, 0)), []);
}

#[test]
fn map_unknown_flags_is_inval_before_anything_else() {
    let mut dev = device();
    ok(&mut dev, &attach(1, 1));
    for flags in [8, 0x10 | R, 0x8000_0000] {
        assert_eq!(status(&mut dev, &map(1, 0, 0xfff, 0, flags)), Status::Inval);
        assert_eq!(status(&mut dev, &map(9, 0, 0xfff, 0, flags)), Status::Inval);
    }
    assert!(dev.mappings(1).unwrap().is_empty());
}

#[test]
fn map_unknown_domain_is_noent() {
    let mut dev = device();
    assert_eq!(status(&mut dev, &map(1, 0, 0xfff, 0, R)), Status::NoEnt);
    // Even with a bad range: the domain is checked first.
    assert_eq!(status(&mut dev, &map(1, 9, 1, 0, R)), Status::NoEnt);
}

#[test]
fn map_overlap_is_inval() {
    let mut dev = device();
    ok(&mut dev, &attach(1, 1));
    ok(&mut dev, &map(1, 0x1000, 0x1fff, 0, R));
    for (s, e) in [
        (0x1000, 0x1fff),
        (0x0, 0x1000),
        (0x1fff, 0x2fff),
        (0x1400, 0x14ff),
        (0, u64::MAX),
    ] {
        assert_eq!(status(&mut dev, &map(1, s, e, 0, R)), Status::Inval);
    }
    // Touching is not overlapping.
    ok(&mut dev, &map(1, 0x0, 0xfff, 0, R));
    ok(&mut dev, &map(1, 0x2000, 0x2fff, 0, R));
    // Other domains are separate address spaces.
    ok(&mut dev, &attach(2, 2));
    ok(&mut dev, &map(2, 0x1000, 0x1fff, 0, R));
}

#[test]
fn map_is_byte_granular_as_in_c() {
    // The spec lets the device refuse unaligned ranges (SHOULD, RANGE);
    // the C device accepts them and so does this one.
    let mut dev = device();
    ok(&mut dev, &attach(1, 1));
    ok(&mut dev, &map(1, 0x1001, 0x1001, 0x7, R));
    ok(&mut dev, &map(1, 0x1002, 0x2ffe, 0x3, W));
    assert_eq!(dev.lookup(1, 0x1001).unwrap().phys(0x1001), 0x7);
    assert_eq!(dev.lookup(1, 0x1003).unwrap().phys(0x1003), 0x4);
    assert_eq!(dev.lookup(1, 0x1000), None);
    assert_eq!(dev.lookup(1, 0x2fff), None);
}

#[test]
fn map_at_the_top_of_the_address_space() {
    let mut dev = device();
    ok(&mut dev, &attach(1, 1));
    ok(&mut dev, &map(1, u64::MAX - 0xfff, u64::MAX, 0x1000, RW));
    assert_eq!(dev.lookup(1, u64::MAX).unwrap().phys(u64::MAX), 0x1fff);
    assert_eq!(
        status(&mut dev, &map(1, u64::MAX, u64::MAX, 0, R)),
        Status::Inval
    );
    ok(&mut dev, &unmap(1, u64::MAX - 0xfff, u64::MAX));
    // The whole space in one mapping, and a phys range that wraps (the C
    // device does not check it either).
    let events = ok(&mut dev, &map(1, 0, u64::MAX, u64::MAX, R));
    assert_eq!(events, [map_ev(1, 0, u64::MAX, u64::MAX, R)]);
    assert_eq!(dev.lookup(1, 1).unwrap().phys(1), 0);
    let events = ok(&mut dev, &unmap(1, 0, u64::MAX));
    assert_eq!(events, [unmap_ev(1, 0, u64::MAX)]);
}

#[test]
fn difference_map_reversed_range_is_range() {
    let mut dev = device();
    ok(&mut dev, &attach(1, 1));
    assert_eq!(
        status(&mut dev, &map(1, 0x2000, 0x1fff, 0, R)),
        Status::Range
    );
    assert_eq!(status(&mut dev, &map(1, u64::MAX, 0, 0, R)), Status::Range);
    assert!(dev.mappings(1).unwrap().is_empty());
}

#[test]
fn difference_map_outside_input_range_is_range() {
    let mut dev = device_with(39, &[], true);
    ok(&mut dev, &attach(1, 1));
    let top = (1u64 << 39) - 1;
    ok(&mut dev, &map(1, top - 0xfff, top, 0, R));
    assert_eq!(status(&mut dev, &map(1, top, top + 1, 0, R)), Status::Range);
    assert_eq!(
        status(&mut dev, &map(1, top + 1, top + 0x1000, 0, R)),
        Status::Range
    );
    assert_eq!(dev.mappings(1).unwrap().len(), 1);
}

// --- UNMAP --------------------------------------------------------------

#[test]
fn unmap_statuses() {
    let mut dev = device();
    assert_eq!(status(&mut dev, &unmap(1, 0, 0xfff)), Status::NoEnt);
    ok(&mut dev, &attach(1, 1));
    assert_eq!(ok(&mut dev, &unmap(1, 0, u64::MAX)), [], "nothing: OK");
    ok(&mut dev, &map(1, 0x1000, 0x1fff, 0, R));
    assert_eq!(status(&mut dev, &unmap(1, 0x1000, 0x17ff)), Status::Range);
    assert_eq!(status(&mut dev, &unmap(1, 0x1800, 0x1fff)), Status::Range);
    assert_eq!(status(&mut dev, &unmap(1, 0x1800, 0x1800)), Status::Range);
    assert!(dev.lookup(1, 0x1000).is_some());
    let mut req = unmap(1, 0, 0x1fff);
    req[24..28].copy_from_slice(&[0xff; 4]); // reserved: ignored
    assert_eq!(ok(&mut dev, &req), [unmap_ev(1, 0x1000, 0x1fff)]);
}

#[test]
fn unmap_notifies_every_endpoint_for_every_mapping() {
    let mut dev = device();
    ok(&mut dev, &attach(1, 1));
    ok(&mut dev, &attach(1, 2));
    ok(&mut dev, &map(1, 0x1000, 0x1fff, 0, R));
    ok(&mut dev, &map(1, 0x3000, 0x3fff, 0, MMIO));
    ok(&mut dev, &map(1, 0x9000, 0x9fff, 0, R));
    let events = ok(&mut dev, &unmap(1, 0x800, 0x4800));
    assert_eq!(
        events,
        // Mapping by mapping, then the domain's list order (newest first).
        [
            unmap_ev(2, 0x1000, 0x1fff),
            unmap_ev(1, 0x1000, 0x1fff),
            unmap_ev(2, 0x3000, 0x3fff),
            unmap_ev(1, 0x3000, 0x3fff),
        ]
    );
    assert_eq!(dev.mappings(1).unwrap().len(), 1);
}

#[test]
fn difference_unmap_is_atomic() {
    // C removes [0x1000, 0x1fff] and [0x2000, 0x2fff] (whichever its tree
    // search meets first) before it finds [0x3000, 0x3fff] in the way.
    let mut dev = device();
    ok(&mut dev, &attach(1, 1));
    for s in [0x1000, 0x2000, 0x3000] {
        ok(&mut dev, &map(1, s, s + 0xfff, 0, R));
    }
    let (status, events) = send(&mut dev, &unmap(1, 0, 0x37ff));
    assert_eq!(status, Status::Range);
    assert_eq!(events, []);
    assert_eq!(dev.mappings(1).unwrap().len(), 3);
}

#[test]
fn difference_unmap_reversed_range_is_range() {
    let mut dev = device();
    ok(&mut dev, &attach(1, 1));
    ok(&mut dev, &map(1, 0x1000, 0x1fff, 0, R));
    // C: RANGE here (a mapping spans [0x1100, 0x1200])...
    assert_eq!(status(&mut dev, &unmap(1, 0x1200, 0x1100)), Status::Range);
    // ...but OK here; both are RANGE here.
    assert_eq!(status(&mut dev, &unmap(1, 0x5000, 0x4000)), Status::Range);
    assert_eq!(dev.mappings(1).unwrap().len(), 1);
}

// --- PROBE --------------------------------------------------------------

const PROBE_ANSWER: usize = 512 + 4;

fn msi() -> ReservedRegion {
    ReservedRegion {
        start: 0xfee0_0000,
        end: 0xfeef_ffff,
        kind: 1,
    }
}

#[test]
fn probe_reports_the_reserved_regions() {
    let low = ReservedRegion {
        start: 0,
        end: 0xfff,
        kind: 0,
    };
    let mut dev = device_with(64, &[msi(), low], true);
    let reply = dev.handle_request(&probe(1), PROBE_ANSWER);
    assert!(reply.events.is_empty());
    let Response::Used(bytes) = &reply.response else {
        panic!()
    };
    assert_eq!(bytes.len(), PROBE_ANSWER);
    assert_eq!(reply.response.status(), Some(Status::Ok));
    assert_eq!(bytes[512..], [0, 0, 0, 0]);
    assert_eq!(parse_properties(&bytes[..512]), Some(vec![low, msi()]));
    assert_eq!(bytes[..8], [1, 0, 20, 0, 0, 0, 0, 0]);
    assert!(bytes[48..512].iter().all(|&b| b == 0));
    // A larger buffer gets the same answer.
    assert_eq!(dev.handle_request(&probe(1), 4096).response, reply.response);
}

#[test]
fn probe_of_overlapping_regions_reports_them_split() {
    let inner = ReservedRegion {
        start: 0xfee0_1000,
        end: 0xfee0_1fff,
        kind: 0,
    };
    let mut dev = device_with(64, &[msi(), inner], true);
    let reply = dev.handle_request(&probe(2), PROBE_ANSWER);
    let Response::Used(bytes) = reply.response else {
        panic!()
    };
    let regions = parse_properties(&bytes[..512]).unwrap();
    assert_eq!(
        regions,
        [
            ReservedRegion {
                end: 0xfee0_0fff,
                ..msi()
            },
            inner,
            ReservedRegion {
                start: 0xfee0_2000,
                ..msi()
            },
        ]
    );
}

#[test]
fn probe_with_no_region_is_all_zero() {
    let mut dev = device();
    let reply = dev.handle_request(&probe(3), PROBE_ANSWER);
    assert_eq!(reply.response, Response::Used(vec![0; PROBE_ANSWER]));
}

#[test]
fn probe_unknown_endpoint_is_noent_in_a_full_answer() {
    let mut dev = device_with(64, &[msi()], true);
    let reply = dev.handle_request(&probe(9), PROBE_ANSWER);
    let Response::Used(bytes) = &reply.response else {
        panic!()
    };
    assert_eq!(bytes.len(), PROBE_ANSWER);
    assert!(bytes[..512].iter().all(|&b| b == 0));
    assert_eq!(reply.response.status(), Some(Status::NoEnt));
}

#[test]
fn probe_too_many_regions_is_inval() {
    let regions: Vec<_> = (0..22u64)
        .map(|i| ReservedRegion {
            start: i * 0x1000,
            end: i * 0x1000 + 0xfff,
            kind: 0,
        })
        .collect();
    let mut dev = device_with(64, &regions, true);
    let reply = dev.handle_request(&probe(1), PROBE_ANSWER);
    assert_eq!(reply.response.status(), Some(Status::Inval));
    let mut dev = device_with(64, &regions[..21], true);
    let reply = dev.handle_request(&probe(1), PROBE_ANSWER);
    assert_eq!(reply.response.status(), Some(Status::Ok));
}

#[test]
fn probe_with_a_short_writable_buffer_is_deverr_at_offset_zero() {
    let mut dev = device_with(64, &[msi()], true);
    for writable in [4, 5, 512, PROBE_ANSWER - 1] {
        let reply = dev.handle_request(&probe(1), writable);
        assert_eq!(reply.response, Response::Used(vec![3, 0, 0, 0]));
    }
    // Even when the request itself is bad.
    let reply = dev.handle_request(&probe(1)[..10], 4);
    assert_eq!(reply.response, Response::Used(vec![3, 0, 0, 0]));
}

#[test]
fn probe_truncated_is_inval_and_reserved_is_ignored() {
    let mut dev = device();
    let req = probe(1);
    for len in [HEAD_SIZE, 8, 71] {
        let reply = dev.handle_request(&req[..len], PROBE_ANSWER);
        assert_eq!(reply.response.status(), Some(Status::Inval));
        let Response::Used(bytes) = reply.response else {
            panic!()
        };
        assert_eq!(bytes.len(), PROBE_ANSWER);
    }
    assert_eq!(req[0], T_PROBE);
    let mut req = probe(1);
    req[8..72].copy_from_slice(&[0xaa; 64]);
    let reply = dev.handle_request(&req, PROBE_ANSWER);
    assert_eq!(reply.response.status(), Some(Status::Ok));
}

// --- device-level operations -------------------------------------------

#[test]
fn reset_detaches_everything() {
    let mut dev = device();
    ok(&mut dev, &attach(1, 1));
    ok(&mut dev, &attach(1, 2));
    ok(&mut dev, &attach_flags(2, 3, 1));
    ok(&mut dev, &map(1, 0, 0xfff, 0, RW));
    let events = dev.reset();
    // Domains ascending, each in list order (newest first), as C destroys
    // its domain tree.
    assert_eq!(
        events,
        [
            unmap_ev(2, 0, 0xfff),
            switch_ev(2, true),
            unmap_ev(1, 0, 0xfff),
            switch_ev(1, true),
            switch_ev(3, true),
        ]
    );
    assert_eq!(dev.domain_ids().count(), 0);
    assert!(dev.has_endpoint(1) && dev.endpoint_domain(1).is_none());
    assert!(dev.bypass(), "bypass survives a device reset");
    ok(&mut dev, &attach(1, 1));
}

#[test]
fn bypass_changes_switch_every_endpoint() {
    let mut dev = device();
    ok(&mut dev, &attach(1, 1));
    ok(&mut dev, &attach_flags(2, 2, 1));
    let events = dev.set_bypass(false);
    assert_eq!(
        events,
        [switch_ev(1, false), switch_ev(2, true), switch_ev(3, false)]
    );
    assert!(!dev.endpoint_bypassed(3));
    assert!(dev.set_bypass(true).contains(&switch_ev(3, true)));
}

#[test]
fn removing_an_endpoint_detaches_it() {
    let mut dev = device();
    ok(&mut dev, &attach(1, 1));
    ok(&mut dev, &map(1, 0, 0xfff, 0, RW));
    assert_eq!(
        dev.remove_endpoint(1),
        [unmap_ev(1, 0, 0xfff), switch_ev(1, true)]
    );
    assert!(!dev.has_endpoint(1));
    assert_eq!(dev.domain_bypass(1), None);
    assert_eq!(status(&mut dev, &attach(1, 1)), Status::NoEnt);
    assert!(!dev.add_endpoint(2), "already there");
    assert_eq!(dev.remove_endpoint(42), []);
}

#[test]
fn replay_of_an_unattached_endpoint_is_empty() {
    let dev = device();
    assert_eq!(dev.replay(1), []);
    assert_eq!(dev.replay(99), []);
}
