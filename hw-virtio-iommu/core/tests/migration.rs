// SPDX-License-Identifier: GPL-2.0-or-later

//! Live migration: the bytes of QEMU's vmstate "virtio-iommu-device"
//! version 2, the round trip through them, the checks of a corrupt stream,
//! and a restore that refuses without changing the device.

mod common;

use common::*;
use proptest::prelude::*;
use virtio_iommu_core::config::Config;
use virtio_iommu_core::migration::{Field, Interval, Tree};
use virtio_iommu_core::properties::Granule;
use virtio_iommu_core::request::{Attach, Detach, Map, Request, Unmap};
use virtio_iommu_core::{
    load_state, Device, DeviceConfig, MapFlags, Mapping, MigrationError, NotifierEvent, Perm,
    Response, SavedDomain, SavedState, Status,
};

fn save(dev: &Device) -> Vec<u8> {
    let mut out = Vec::new();
    dev.save_state(&mut out);
    out
}

/// Load all of `bytes` (nothing may be left over).
fn load(bytes: &[u8]) -> Result<SavedState, MigrationError> {
    let mut rest = bytes;
    let state = load_state(&mut rest)?;
    assert!(rest.is_empty(), "{} bytes left over", rest.len());
    Ok(state)
}

fn b8(v: u8) -> Vec<u8> {
    vec![v]
}
fn b32(v: u32) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}
fn b64(v: u64) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

/// Endpoints 1-5; through requests: domain 7 with three mappings (added
/// out of IOVA order, one MMIO) and endpoints attached 2, 1, 4, then 1
/// again; bypass domain 3 with endpoint 3, attached last; endpoint 5
/// unattached; config bypass off.
fn golden_device() -> Device {
    let mut dev = device();
    dev.add_endpoint(4);
    dev.add_endpoint(5);
    ok(&mut dev, &attach(7, 2));
    ok(&mut dev, &attach(7, 1));
    ok(&mut dev, &attach(7, 4));
    ok(&mut dev, &attach(7, 1)); // back to the head of the list
    ok(&mut dev, &map(7, 0x1000, 0x1fff, 0xa000, R));
    ok(
        &mut dev,
        &map(7, 0xffff_0000, 0xffff_ffff, 0x1_0000_0000, RW),
    );
    ok(&mut dev, &map(7, 0x4000, 0x4fff, 0xfee0_0000, W | MMIO));
    ok(&mut dev, &attach_flags(3, 3, 1));
    dev.set_bypass(false);
    dev
}

fn golden_bytes() -> Vec<u8> {
    [
        b32(2), // two domains
        // domain 3
        b8(1),
        b64(3), // tree key
        b32(3), // id
        b32(0), // no mapping
        b8(0),  // end of mappings
        b8(1),  // endpoint...
        b32(3), // ...3
        b8(0),  // end of endpoints
        b8(1),  // bypass domain
        // domain 7
        b8(1),
        b64(7),
        b32(7),
        b32(3), // three mappings, by IOVA
        b8(1),
        b64(0x1000),
        b64(0x1fff),
        b64(0xa000),
        b32(1), // READ
        b8(1),
        b64(0x4000),
        b64(0x4fff),
        b64(0xfee0_0000),
        b32(6), // WRITE | MMIO
        b8(1),
        b64(0xffff_0000),
        b64(0xffff_ffff),
        b64(0x1_0000_0000),
        b32(3), // READ | WRITE
        b8(0),
        // endpoints newest first: 1 (attached again), 4, 2
        b8(1),
        b32(1),
        b8(1),
        b32(4),
        b8(1),
        b32(2),
        b8(0),
        b8(0), // not a bypass domain
        b8(0), // end of domains
        b8(0), // config bypass
    ]
    .concat()
}

/// A destination: endpoints 1-5 registered, nothing attached, boot-bypass
/// on (the stream says otherwise).
fn fresh() -> Device {
    let mut dev = device();
    dev.add_endpoint(4);
    dev.add_endpoint(5);
    dev
}

#[test]
fn golden_bytes_match_the_c_layout() {
    let dev = golden_device();
    assert_eq!(dev.domain_endpoints(7), [1, 4, 2]);
    assert_eq!(save(&dev), golden_bytes());
}

#[test]
fn empty_device_bytes() {
    let dev = device();
    assert_eq!(save(&dev), [0, 0, 0, 0, 0, 1]);
    let state = load(&[0, 0, 0, 0, 0, 1]).unwrap();
    assert_eq!(
        state,
        SavedState {
            domains: vec![],
            bypass: true
        }
    );
}

#[test]
fn save_appends() {
    let mut out = vec![0xaa];
    device().save_state(&mut out);
    assert_eq!(out, [0xaa, 0, 0, 0, 0, 0, 1]);
}

#[test]
fn golden_bytes_load_into_plain_data() {
    let state = load(&golden_bytes()).unwrap();
    let m = |virt_start, virt_end, phys_start, bits| Mapping {
        virt_start,
        virt_end,
        phys_start,
        flags: MapFlags::from_bits(bits).unwrap(),
    };
    assert_eq!(
        state,
        SavedState {
            domains: vec![
                SavedDomain {
                    id: 3,
                    bypass: true,
                    endpoints: vec![3],
                    mappings: vec![],
                },
                SavedDomain {
                    id: 7,
                    bypass: false,
                    endpoints: vec![1, 4, 2],
                    mappings: vec![
                        m(0x1000, 0x1fff, 0xa000, R),
                        m(0x4000, 0x4fff, 0xfee0_0000, W | MMIO),
                        m(0xffff_0000, 0xffff_ffff, 0x1_0000_0000, RW),
                    ],
                },
            ],
            bypass: false,
        }
    );
}

/// Every answer `translate` gives for these endpoints and addresses.
fn translations(dev: &mut Device, endpoints: &[u32], iovas: &[u64]) -> Vec<String> {
    let mut out = Vec::new();
    for &ep in endpoints {
        for &iova in iovas {
            for access in [Perm::READ, Perm::WRITE, Perm::RW] {
                out.push(format!(
                    "{ep} {iova:#x} {:?}",
                    dev.translate(ep, iova, access)
                ));
            }
        }
    }
    out
}

const SAMPLES: [u64; 12] = [
    0,
    0xfff,
    0x1000,
    0x1800,
    0x1fff,
    0x2000,
    0x4000,
    0xfee0_0000,
    0xffff_0000,
    0xffff_ffff,
    0x1_0000_0000,
    u64::MAX,
];

#[test]
fn round_trip_gives_the_same_bytes_translations_and_events() {
    let mut src = golden_device();
    let bytes = save(&src);
    let mut dst = fresh();
    let events = dst.restore(load(&bytes).unwrap(), |_| true).unwrap();
    assert_eq!(save(&dst), bytes);
    let eps = [1, 2, 3, 4, 5, 6];
    assert_eq!(
        translations(&mut dst, &eps, &SAMPLES),
        translations(&mut src, &eps, &SAMPLES)
    );
    // A fresh destination had nothing attached: every endpoint's address
    // space, then the mappings each endpoint sees (domains ascending, each
    // in list order; MMIO is not notified).
    assert_eq!(
        events,
        [
            switch_ev(1, false),
            switch_ev(2, false),
            switch_ev(3, true),
            switch_ev(4, false),
            switch_ev(5, false),
            map_ev(1, 0x1000, 0x1fff, 0xa000, R),
            map_ev(1, 0xffff_0000, 0xffff_ffff, 0x1_0000_0000, RW),
            map_ev(4, 0x1000, 0x1fff, 0xa000, R),
            map_ev(4, 0xffff_0000, 0xffff_ffff, 0x1_0000_0000, RW),
            map_ev(2, 0x1000, 0x1fff, 0xa000, R),
            map_ev(2, 0xffff_0000, 0xffff_ffff, 0x1_0000_0000, RW),
        ]
    );
    assert!(!dst.bypass());
    assert_eq!(dst.endpoint_domain(5), None);
    // Both devices go on alike: the list order came along.
    for req in [map(7, 0x8000, 0x8fff, 0, RW), unmap(7, 0, u64::MAX)] {
        assert_eq!(send(&mut dst, &req), send(&mut src, &req));
    }
}

#[test]
fn restore_over_a_used_device_unmaps_what_it_saw() {
    let mut dst = fresh();
    ok(&mut dst, &attach(9, 5));
    ok(&mut dst, &map(9, 0x9000, 0x9fff, 0x1000, RW));
    ok(&mut dst, &attach(2, 2));
    let events = dst
        .restore(load(&golden_bytes()).unwrap(), |_| true)
        .unwrap();
    // Detaching what was attached (domains ascending), then as usual.
    assert_eq!(
        events[..3],
        [
            switch_ev(2, true),
            unmap_ev(5, 0x9000, 0x9fff),
            switch_ev(5, true)
        ]
    );
    assert_eq!(
        events[3..8].to_vec(),
        (1..=5).map(|ep| switch_ev(ep, ep == 3)).collect::<Vec<_>>()
    );
    assert_eq!(save(&dst), golden_bytes());
    assert_eq!(dst.domain_bypass(9), None);
    assert_eq!(dst.endpoint_domain(5), None);
}

#[test]
fn every_truncation_is_refused() {
    let bytes = golden_bytes();
    for len in 0..bytes.len() {
        let mut rest = &bytes[..len];
        match load_state(&mut rest) {
            Err(MigrationError::Truncated { field: Some(_) }) => {}
            other => panic!("prefix of {len} bytes: {other:?}"),
        }
    }
    assert_eq!(
        load(&bytes[..3]).unwrap_err().to_string(),
        "the migration stream ends early, in the number of domains"
    );
    assert_eq!(
        load(&bytes[..bytes.len() - 1]).unwrap_err().to_string(),
        "the migration stream ends early, in the config bypass byte"
    );
}

#[test]
fn load_leaves_the_rest_of_the_stream() {
    let mut bytes = golden_bytes();
    bytes.extend_from_slice(b"next");
    let mut rest = &bytes[..];
    load_state(&mut rest).unwrap();
    assert_eq!(rest, b"next");
}

// --- one rule, one error ------------------------------------------------

/// A stream as raw fields, to break one rule at a time.
#[derive(Clone)]
struct Raw {
    count: Option<u32>,
    domains: Vec<RawDomain>,
    bypass: u8,
}

#[derive(Clone)]
struct RawDomain {
    marker: u8,
    key: Option<u64>,
    id: u32,
    count: Option<u32>,
    mappings: Vec<(u64, u64, u64, u32)>,
    endpoints: Vec<u32>,
    bypass: u8,
}

impl Raw {
    fn encode(&self) -> Vec<u8> {
        let mut out = b32(self.count.unwrap_or(self.domains.len() as u32));
        for d in &self.domains {
            out.push(d.marker);
            out.extend(b64(d.key.unwrap_or(u64::from(d.id))));
            out.extend(b32(d.id));
            out.extend(b32(d.count.unwrap_or(d.mappings.len() as u32)));
            for &(low, high, phys, flags) in &d.mappings {
                out.push(1);
                out.extend([b64(low), b64(high), b64(phys), b32(flags)].concat());
            }
            out.push(0);
            for &ep in &d.endpoints {
                out.push(1);
                out.extend(b32(ep));
            }
            out.push(0);
            out.push(d.bypass);
        }
        out.push(0);
        out.push(self.bypass);
        out
    }
}

fn raw_domain(id: u32, endpoints: &[u32], mappings: &[(u64, u64)]) -> RawDomain {
    RawDomain {
        marker: 1,
        key: None,
        id,
        count: None,
        mappings: mappings.iter().map(|&(l, h)| (l, h, 0x5000, RW)).collect(),
        endpoints: endpoints.to_vec(),
        bypass: 0,
    }
}

/// Domain 1 (endpoint 1, one mapping), domain 2 (endpoints 2, 3, two
/// mappings): loads.
fn base() -> Raw {
    Raw {
        count: None,
        domains: vec![
            raw_domain(1, &[1], &[(0x1000, 0x1fff)]),
            raw_domain(2, &[2, 3], &[(0x1000, 0x1fff), (0x3000, 0x3fff)]),
        ],
        bypass: 1,
    }
}

fn err(raw: &Raw) -> MigrationError {
    let e = load(&raw.encode()).unwrap_err();
    assert!(!e.to_string().is_empty());
    e
}

#[test]
fn the_base_stream_loads_and_matches_the_device() {
    let state = load(&base().encode()).unwrap();
    let mut dev = device();
    dev.restore(state, |_| true).unwrap();
    assert_eq!(save(&dev), base().encode());
}

#[test]
fn node_count_must_match() {
    let mut raw = base();
    raw.count = Some(3);
    assert_eq!(
        err(&raw),
        MigrationError::NodeCount {
            tree: Tree::Domains,
            declared: 3,
            found: 2
        }
    );
    raw.count = Some(1);
    let e = err(&raw);
    assert_eq!(
        e,
        MigrationError::NodeCount {
            tree: Tree::Domains,
            declared: 1,
            found: 2
        }
    );
    assert_eq!(
        e.to_string(),
        "the domain tree counts 1 nodes, but more follow"
    );
    let mut raw = base();
    raw.domains[1].count = Some(1);
    assert_eq!(
        err(&raw),
        MigrationError::NodeCount {
            tree: Tree::Mappings { domain: 2 },
            declared: 1,
            found: 2
        }
    );
    raw.domains[1].count = Some(5);
    let e = err(&raw);
    assert_eq!(
        e.to_string(),
        "the mapping tree of domain 2 counts 5 nodes, but 2 follow"
    );
}

#[test]
fn hostile_counts_are_not_trusted() {
    let e = load(&[0xff, 0xff, 0xff, 0xff, 0, 0]).unwrap_err();
    assert_eq!(
        e,
        MigrationError::NodeCount {
            tree: Tree::Domains,
            declared: u32::MAX,
            found: 0
        }
    );
    let e = load(&[0xff, 0xff, 0xff, 0xff]).unwrap_err();
    assert!(matches!(e, MigrationError::Truncated { .. }));
    let mut raw = base();
    raw.count = Some(u32::MAX);
    raw.domains[0].count = Some(u32::MAX);
    assert!(matches!(
        err(&raw),
        MigrationError::NodeCount {
            tree: Tree::Mappings { domain: 1 },
            declared: u32::MAX,
            found: 1
        }
    ));
}

#[test]
fn key_must_be_the_id() {
    let mut raw = base();
    raw.domains[1].key = Some(0x1_0000_0002);
    let e = err(&raw);
    assert_eq!(
        e,
        MigrationError::KeyMismatch {
            key: 0x1_0000_0002,
            id: 2
        }
    );
    assert_eq!(
        e.to_string(),
        "domain 2 is saved under the tree key 0x100000002"
    );
}

#[test]
fn domains_once_and_ascending() {
    let mut raw = base();
    raw.domains[1].id = 1;
    assert_eq!(err(&raw), MigrationError::DuplicateDomain { domain: 1 });
    raw.domains[1].id = 0;
    assert_eq!(
        err(&raw),
        MigrationError::DomainsOutOfOrder {
            previous: 1,
            domain: 0
        }
    );
}

#[test]
fn booleans_and_markers_are_0_or_1() {
    let mut raw = base();
    raw.domains[0].bypass = 2;
    assert_eq!(
        err(&raw),
        MigrationError::BadDomainBypass {
            domain: 1,
            value: 2
        }
    );
    let mut raw = base();
    raw.bypass = 0xff;
    let e = err(&raw);
    assert_eq!(e, MigrationError::BadConfigBypass { value: 0xff });
    assert_eq!(e.to_string(), "the config bypass byte is 0xff, not 0 or 1");
    let mut raw = base();
    raw.domains[1].marker = 2;
    assert_eq!(
        err(&raw),
        MigrationError::BadMarker {
            field: Field::DomainMarker,
            value: 2
        }
    );
    // Markers inside a domain: one domain, one mapping, one endpoint.
    let raw = Raw {
        count: None,
        domains: vec![raw_domain(1, &[1], &[(0, 0xfff)])],
        bypass: 0,
    };
    let good = raw.encode();
    load(&good).unwrap();
    // count 4, marker 1, key 8, id 4, count 4: the mapping marker is at 21;
    // then 28 bytes of mapping, the end marker at 50, the endpoint marker
    // at 51, the id, the end marker at 56.
    for (offset, field) in [
        (21, Field::MappingMarker { domain: 1 }),
        (50, Field::MappingMarker { domain: 1 }),
        (51, Field::EndpointMarker { domain: 1 }),
        (56, Field::EndpointMarker { domain: 1 }),
        (58, Field::DomainMarker),
    ] {
        let mut bad = good.clone();
        bad[offset] = 0x80;
        assert_eq!(
            load(&bad).unwrap_err(),
            MigrationError::BadMarker { field, value: 0x80 },
            "offset {offset}"
        );
    }
}

#[test]
fn intervals_are_checked() {
    let mut raw = base();
    raw.domains[1].mappings[1].1 = 0x2fff; // [0x3000, 0x2fff]
    let e = err(&raw);
    assert_eq!(
        e,
        MigrationError::ReversedInterval {
            domain: 2,
            interval: Interval {
                low: 0x3000,
                high: 0x2fff
            }
        }
    );
    assert_eq!(
        e.to_string(),
        "mapping [0x3000, 0x2fff] of domain 2 ends before it starts"
    );

    let mut raw = base();
    raw.domains[1].mappings[1].0 = 0x1fff; // [0x1fff, 0x3fff]
    let e = err(&raw);
    assert_eq!(
        e,
        MigrationError::OverlappingMappings {
            domain: 2,
            first: Interval {
                low: 0x1000,
                high: 0x1fff
            },
            second: Interval {
                low: 0x1fff,
                high: 0x3fff
            }
        }
    );
    assert_eq!(
        e.to_string(),
        "mappings [0x1000, 0x1fff] and [0x1fff, 0x3fff] of domain 2 overlap"
    );

    let mut raw = base();
    raw.domains[1].mappings.reverse();
    assert!(matches!(
        err(&raw),
        MigrationError::MappingsOutOfOrder { domain: 2, .. }
    ));
}

#[test]
fn unknown_flags_are_refused() {
    let mut raw = base();
    raw.domains[0].mappings[0].3 = 8;
    let e = err(&raw);
    assert_eq!(
        e,
        MigrationError::UnknownMapFlags {
            domain: 1,
            interval: Interval {
                low: 0x1000,
                high: 0x1fff
            },
            flags: 8
        }
    );
    assert_eq!(
        e.to_string(),
        "mapping [0x1000, 0x1fff] of domain 1 has unknown flags 0x8"
    );
}

#[test]
fn bypass_domains_have_no_mapping() {
    let mut raw = base();
    raw.domains[0].bypass = 1;
    assert!(matches!(
        err(&raw),
        MigrationError::MappingInBypassDomain { domain: 1, .. }
    ));
    raw.domains[0].mappings.clear();
    load(&raw.encode()).unwrap();
}

#[test]
fn endpoints_are_listed_once() {
    let mut raw = base();
    raw.domains[1].endpoints = vec![2, 3, 2];
    let e = err(&raw);
    assert_eq!(
        e,
        MigrationError::DuplicateEndpoint {
            endpoint: 2,
            first_domain: 2,
            domain: 2
        }
    );
    assert_eq!(e.to_string(), "endpoint 0x2 is listed twice in domain 2");
    let mut raw = base();
    raw.domains[1].endpoints = vec![2, 1];
    let e = err(&raw);
    assert_eq!(
        e,
        MigrationError::DuplicateEndpoint {
            endpoint: 1,
            first_domain: 1,
            domain: 2
        }
    );
    assert_eq!(
        e.to_string(),
        "endpoint 0x1 is attached to both domain 1 and domain 2"
    );
}

#[test]
fn restore_checks_a_hand_built_state_too() {
    let mut state = load(&base().encode()).unwrap();
    state.domains[1].endpoints.push(1);
    let mut dev = device();
    assert!(matches!(
        dev.restore(state, |_| true),
        Err(MigrationError::DuplicateEndpoint { endpoint: 1, .. })
    ));
    assert_eq!(save(&dev), save(&device()));
}

#[test]
fn a_domain_without_endpoints_is_dropped() {
    let mut raw = base();
    raw.domains.insert(0, raw_domain(0, &[], &[(0, 0xfff)]));
    let state = load(&raw.encode()).unwrap();
    assert!(state.domains[0].endpoints.is_empty());
    let mut dev = device();
    dev.restore(state, |_| true).unwrap();
    assert_eq!(dev.domain_ids().collect::<Vec<_>>(), [1, 2]);
    assert_eq!(save(&dev), base().encode());
    assert_eq!(
        status(&mut dev, &map(0, 0x2000, 0x2fff, 0, R)),
        Status::NoEnt
    );
}

// --- restore refusals leave the device as it was ------------------------

/// A destination already in use, so that "unchanged" means something.
fn used_destination(config: impl FnOnce(&mut DeviceConfig)) -> Device {
    let c = Config::new(64, Granule::Size4K, 4096, true).unwrap();
    let mut dc = DeviceConfig::new(&c, &[]);
    config(&mut dc);
    let mut dev = Device::new(dc, true);
    for ep in [1, 2, 3] {
        dev.add_endpoint(ep);
    }
    dev.add_unmanaged_endpoint(0x28);
    ok(&mut dev, &attach(0, 3));
    ok(&mut dev, &map(0, 0, 0xfff, 0, RW));
    dev
}

fn refused(dev: &mut Device, raw: &Raw, known: impl Fn(u32) -> bool) -> MigrationError {
    let before = save(dev);
    let e = dev
        .restore(load(&raw.encode()).unwrap(), known)
        .unwrap_err();
    assert_eq!(save(dev), before, "{e}");
    assert!(dev.bypass());
    e
}

#[test]
fn restore_refuses_unknown_endpoints() {
    let mut dev = used_destination(|_| {});
    let e = refused(&mut dev, &base(), |ep| ep != 3);
    assert_eq!(
        e,
        MigrationError::UnknownEndpoint {
            endpoint: 3,
            domain: 2
        }
    );
    assert_eq!(
        e.to_string(),
        "endpoint 0x3 (attached to domain 2) has no device behind this IOMMU"
    );
    let mut raw = base();
    raw.domains[1].endpoints.push(4);
    assert_eq!(
        refused(&mut dev, &raw, |_| true),
        MigrationError::UnregisteredEndpoint {
            endpoint: 4,
            domain: 2
        }
    );
}

#[test]
fn restore_refuses_unmanaged_endpoints() {
    let mut dev = used_destination(|_| {});
    let mut raw = base();
    raw.domains[0].endpoints.push(0x28);
    let e = refused(&mut dev, &raw, |_| true);
    assert_eq!(
        e,
        MigrationError::UnmanagedEndpoint {
            endpoint: 0x28,
            domain: 1
        }
    );
    assert!(e.to_string().contains("bypass-devices"));
}

#[test]
fn restore_refuses_what_is_out_of_range() {
    let mut dev = used_destination(|dc| dc.domain_end = 1);
    let e = refused(&mut dev, &base(), |_| true);
    assert_eq!(
        e,
        MigrationError::DomainOutOfRange {
            domain: 2,
            start: 0,
            end: 1
        }
    );
    assert_eq!(
        e.to_string(),
        "domain 2 is outside this device's domain range [0, 1]"
    );

    let mut dev = used_destination(|dc| dc.input_end = 0x2fff);
    let e = refused(&mut dev, &base(), |_| true);
    assert_eq!(
        e,
        MigrationError::MappingOutOfRange {
            domain: 2,
            interval: Interval {
                low: 0x3000,
                high: 0x3fff
            },
            start: 0,
            end: 0x2fff
        }
    );
}

// --- random request histories ---------------------------------------------

const ENDPOINTS: [u32; 4] = [1, 2, 3, 0xffff];

fn addr() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => 0u64..48,
        2 => (u64::MAX - 24)..=u64::MAX,
        1 => any::<u64>(),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    let domain = prop::sample::select(vec![0u32, 1, 2, u32::MAX]);
    let endpoint = prop::sample::select(ENDPOINTS.to_vec());
    prop_oneof![
        4 => (domain.clone(), endpoint.clone(), 0u32..2).prop_map(|(domain, endpoint, flags)| {
            Request::Attach(Attach { domain, endpoint, flags, reserved: [0; 4] })
        }),
        1 => (domain.clone(), endpoint).prop_map(|(domain, endpoint)| {
            Request::Detach(Detach { domain, endpoint, reserved: [0; 8] })
        }),
        8 => (domain.clone(), addr(), addr(), any::<u64>(), 0u32..8).prop_map(
            |(domain, a, b, phys_start, flags)| Request::Map(Map {
                domain, virt_start: a.min(b), virt_end: a.max(b), phys_start, flags
            })
        ),
        2 => (domain, addr(), addr()).prop_map(|(domain, a, b)| Request::Unmap(Unmap {
            domain, virt_start: a.min(b), virt_end: a.max(b), reserved: [0; 4]
        })),
    ]
}

fn history_device(bypass: bool, requests: &[Request]) -> Device {
    let mut dev = fresh_history(bypass);
    for req in requests {
        dev.handle_request(&req.encode(), 4);
    }
    dev
}

fn fresh_history(bypass: bool) -> Device {
    let c = Config::new(64, Granule::Size4K, 4096, bypass).unwrap();
    let mut dev = Device::new(DeviceConfig::new(&c, &[]), bypass);
    for ep in ENDPOINTS {
        dev.add_endpoint(ep);
    }
    dev
}

fn answer(dev: &mut Device, req: &Request) -> (Response, Vec<NotifierEvent>) {
    let reply = dev.handle_request(&req.encode(), 4);
    (reply.response, reply.events)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_histories_round_trip(
        src_bypass in any::<bool>(),
        dst_bypass in any::<bool>(),
        history in prop::collection::vec(request(), 0..60),
        after in prop::collection::vec(request(), 0..20),
        iovas in prop::collection::vec(addr(), 8),
    ) {
        let mut src = history_device(src_bypass, &history);
        let bytes = save(&src);
        let mut dst = fresh_history(dst_bypass);
        let events = dst.restore(load(&bytes).unwrap(), |_| true).unwrap();
        prop_assert_eq!(save(&dst), bytes);
        // The events tell each endpoint its address space and exactly what
        // it can see.
        for ep in ENDPOINTS {
            let last_switch = events.iter().rev().find_map(|e| match *e {
                NotifierEvent::SwitchAddressSpace { endpoint, bypass } if endpoint == ep => {
                    Some(bypass)
                }
                _ => None,
            });
            prop_assert_eq!(last_switch, Some(src.endpoint_bypassed(ep)));
            let seen: Vec<NotifierEvent> = events
                .iter()
                .filter(|e| matches!(e, NotifierEvent::Map { endpoint, .. } if *endpoint == ep))
                .copied()
                .collect();
            prop_assert_eq!(seen, src.replay(ep));
        }
        let mut probe: Vec<u64> = iovas.clone();
        for id in src.domain_ids().collect::<Vec<_>>() {
            for m in src.mappings(id).unwrap().iter() {
                probe.extend([m.virt_start, m.virt_end, m.virt_end.wrapping_add(1)]);
            }
        }
        let eps = [1, 2, 3, 0xffff, 7];
        prop_assert_eq!(
            translations(&mut dst, &eps, &probe),
            translations(&mut src, &eps, &probe)
        );
        // And both go on alike, events (in list order) included.
        for req in &after {
            prop_assert_eq!(answer(&mut dst, req), answer(&mut src, req));
        }
        prop_assert_eq!(save(&dst), save(&src));
    }

    #[test]
    fn byte_flips_never_panic(
        history in prop::collection::vec(request(), 0..30),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
    ) {
        let mut bytes = save(&history_device(true, &history));
        for (at, x) in &flips {
            let i = at.index(bytes.len());
            bytes[i] ^= x;
        }
        let mut rest = &bytes[..];
        if let Ok(state) = load_state(&mut rest) {
            prop_assert!(state.validate().is_ok());
            let mut dst = fresh_history(false);
            let before = save(&dst);
            match dst.restore(state, |_| true) {
                Ok(_) => {}
                Err(_) => prop_assert_eq!(save(&dst), before),
            }
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut rest = &bytes[..];
        let _ = load_state(&mut rest);
    }
}

// --- endpoints above the PCI requester ids (virtio-mmio) ----------------------

fn save_extra(dev: &Device) -> Vec<u8> {
    let mut out = Vec::new();
    dev.save_extra_endpoints(&mut out);
    out
}

/// Domain 7 with PCI endpoint 1 and virtio-mmio endpoints 0x1001f and
/// 0x10000; domain 9 with only virtio-mmio endpoint 0x10005.
fn device_with_mmio_endpoints() -> Device {
    let mut dev = device();
    for ep in [0x1001f, 0x10000, 0x10005] {
        dev.add_endpoint(ep);
    }
    ok(&mut dev, &attach(7, 1));
    ok(&mut dev, &attach(7, 0x1001f));
    ok(&mut dev, &attach(7, 0x10000));
    ok(&mut dev, &attach(9, 0x10005));
    ok(&mut dev, &map(7, 0x1000, 0x1fff, 0xa000, RW));
    ok(&mut dev, &map(9, 0x2000, 0x2fff, 0xb000, R));
    dev
}

#[test]
fn mmio_endpoints_travel_outside_the_c_layout() {
    let src = device_with_mmio_endpoints();
    assert!(src.has_extra_endpoints());
    assert!(!golden_device().has_extra_endpoints());
    // The C layout lists PCI endpoints only: domain 9 looks empty there.
    let main = load(&save(&src)).unwrap();
    let eps: Vec<(u32, Vec<u32>)> = main
        .domains
        .iter()
        .map(|d| (d.id, d.endpoints.clone()))
        .collect();
    assert_eq!(eps, [(7, vec![1]), (9, vec![])]);
    // The subsection, by ascending endpoint id.
    assert_eq!(
        save_extra(&src),
        [
            b32(3),
            b32(7),
            b32(0x10000),
            b32(9),
            b32(0x10005),
            b32(7),
            b32(0x1001f)
        ]
        .concat()
    );
}

#[test]
fn mmio_endpoints_round_trip() {
    let mut src = device_with_mmio_endpoints();
    let mut state = load(&save(&src)).unwrap();
    let extra = save_extra(&src);
    let mut rest = extra.as_slice();
    virtio_iommu_core::load_extra_endpoints(&mut rest, &mut state).unwrap();
    assert!(rest.is_empty());
    let mut dst = device();
    for ep in [0x1001f, 0x10000, 0x10005] {
        dst.add_endpoint(ep);
    }
    dst.restore(state, |_| true).unwrap();
    assert_eq!(save(&dst), save(&src));
    assert_eq!(save_extra(&dst), extra);
    let eps = [1, 0x10000, 0x10005, 0x1001f];
    let iovas = [0x1000, 0x1fff, 0x2000, 0x3000];
    assert_eq!(
        translations(&mut dst, &eps, &iovas),
        translations(&mut src, &eps, &iovas)
    );
}

#[test]
fn a_bad_mmio_endpoint_subsection_is_refused() {
    let src = device_with_mmio_endpoints();
    let main = save(&src);
    let try_extra = |bytes: Vec<u8>| {
        let mut state = load(&main).unwrap();
        let mut rest = bytes.as_slice();
        virtio_iommu_core::load_extra_endpoints(&mut rest, &mut state)
    };
    // A domain the stream lacks
    assert_eq!(
        try_extra([b32(1), b32(8), b32(0x10001)].concat()),
        Err(MigrationError::ExtraEndpointDomain {
            endpoint: 0x10001,
            domain: 8
        })
    );
    // A PCI requester id belongs to the C layout
    assert_eq!(
        try_extra([b32(1), b32(7), b32(0x0010)].concat()),
        Err(MigrationError::PciEndpointInExtra {
            endpoint: 0x10,
            domain: 7
        })
    );
    // Twice, or already in the C layout's lists
    assert_eq!(
        try_extra([b32(2), b32(7), b32(0x10001), b32(9), b32(0x10001)].concat()),
        Err(MigrationError::DuplicateEndpoint {
            endpoint: 0x10001,
            first_domain: 7,
            domain: 9
        })
    );
    // Truncated anywhere
    let full = save_extra(&src);
    for len in 0..full.len() {
        assert!(matches!(
            try_extra(full[..len].to_vec()),
            Err(MigrationError::Truncated { field: Some(_) })
        ));
    }
    // A hostile count is not trusted: the stream ends first
    assert!(matches!(
        try_extra(b32(u32::MAX)),
        Err(MigrationError::Truncated { field: Some(_) })
    ));
}
