// SPDX-License-Identifier: GPL-2.0-or-later

//! Random request sequences against the device and against a deliberately
//! plain model of the same semantics (a `Vec` of mappings per domain,
//! linear scans everywhere). Both must answer every request with the same
//! status and afterwards translate random addresses identically. The
//! notifier events are checked too: replayed into a per-endpoint shadow of
//! what vhost/VFIO would hold, they must reproduce what each endpoint can
//! see.
//!
//! A second property: a `TranslationView` taken at any point decides
//! every access as `Device::translate` does at that point, and keeps
//! deciding so however the device changes afterwards.

use std::collections::BTreeMap;

use proptest::prelude::*;
use virtio_iommu_core::config::Config;
use virtio_iommu_core::properties::{Granule, ReservedRegion};
use virtio_iommu_core::request::{Attach, Detach, Map, Probe, Request, Unmap};
use virtio_iommu_core::{
    Device, DeviceConfig, NotifierEvent, Perm, Reply, Response, Status, Translated, TranslationView,
};

const REGISTERED: [u32; 4] = [1, 2, 3, 0xffff];
const DOMAINS: [u32; 4] = [0, 1, 2, u32::MAX];

// --- the model -----------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MMapping {
    start: u64,
    end: u64,
    phys: u64,
    flags: u32,
}

#[derive(Debug)]
struct MDomain {
    id: u32,
    bypass: bool,
    endpoints: Vec<u32>,
    maps: Vec<MMapping>,
}

struct Model {
    input_end: u64,
    endpoints: Vec<(u32, Option<u32>)>,
    domains: Vec<MDomain>,
}

impl Model {
    fn new(input_end: u64) -> Self {
        Self {
            input_end,
            endpoints: REGISTERED.iter().map(|&e| (e, None)).collect(),
            domains: Vec::new(),
        }
    }

    fn ep(&mut self, id: u32) -> Option<&mut Option<u32>> {
        self.endpoints
            .iter_mut()
            .find(|(e, _)| *e == id)
            .map(|(_, d)| d)
    }

    fn domain(&mut self, id: u32) -> Option<&mut MDomain> {
        self.domains.iter_mut().find(|d| d.id == id)
    }

    fn detach_ep(&mut self, ep: u32) {
        let Some(slot) = self.ep(ep) else { return };
        let Some(id) = slot.take() else { return };
        let d = self.domain(id).unwrap();
        d.endpoints.retain(|&e| e != ep);
        if d.endpoints.is_empty() {
            self.domains.retain(|d| d.id != id);
        }
    }

    fn apply(&mut self, req: &Request) -> Status {
        match *req {
            Request::Attach(a) => {
                if a.flags > 1 || a.reserved != [0; 4] {
                    return Status::Inval;
                }
                let Some(&mut current) = self.ep(a.endpoint) else {
                    return Status::NoEnt;
                };
                let bypass = a.flags == 1;
                if let Some(d) = self.domain(a.domain) {
                    let alone = current == Some(a.domain) && d.endpoints == [a.endpoint];
                    if !alone && d.bypass != bypass {
                        return Status::Inval;
                    }
                }
                self.detach_ep(a.endpoint);
                if self.domain(a.domain).is_none() {
                    self.domains.push(MDomain {
                        id: a.domain,
                        bypass,
                        endpoints: vec![],
                        maps: vec![],
                    });
                }
                // Newest first, as C's QLIST_INSERT_HEAD.
                self.domain(a.domain)
                    .unwrap()
                    .endpoints
                    .insert(0, a.endpoint);
                *self.ep(a.endpoint).unwrap() = Some(a.domain);
                Status::Ok
            }
            Request::Detach(d) => match self.ep(d.endpoint).copied().flatten() {
                None => Status::NoEnt,
                Some(id) if id != d.domain => Status::Inval,
                Some(_) => {
                    self.detach_ep(d.endpoint);
                    Status::Ok
                }
            },
            Request::Map(m) => {
                if m.flags & !7 != 0 {
                    return Status::Inval;
                }
                let input_end = self.input_end;
                let Some(d) = self.domain(m.domain) else {
                    return Status::NoEnt;
                };
                if d.bypass {
                    return Status::Inval;
                }
                if m.virt_start > m.virt_end || m.virt_end > input_end {
                    return Status::Range;
                }
                if d.maps
                    .iter()
                    .any(|x| !(x.end < m.virt_start || m.virt_end < x.start))
                {
                    return Status::Inval;
                }
                d.maps.push(MMapping {
                    start: m.virt_start,
                    end: m.virt_end,
                    phys: m.phys_start,
                    flags: m.flags,
                });
                Status::Ok
            }
            Request::Unmap(u) => {
                let Some(d) = self.domain(u.domain) else {
                    return Status::NoEnt;
                };
                if d.bypass {
                    return Status::Inval;
                }
                if u.virt_start > u.virt_end {
                    return Status::Range;
                }
                let touched = |x: &MMapping| !(x.end < u.virt_start || u.virt_end < x.start);
                let inside = |x: &MMapping| u.virt_start <= x.start && x.end <= u.virt_end;
                if d.maps.iter().any(|x| touched(x) && !inside(x)) {
                    return Status::Range;
                }
                d.maps.retain(|x| !touched(x));
                Status::Ok
            }
            Request::Probe(p) => {
                if REGISTERED.contains(&p.endpoint) {
                    Status::Ok
                } else {
                    Status::NoEnt
                }
            }
        }
    }

    fn lookup(&self, domain: u32, iova: u64) -> Option<(u64, u32)> {
        let d = self.domains.iter().find(|d| d.id == domain)?;
        let m = d.maps.iter().find(|m| m.start <= iova && iova <= m.end)?;
        Some((iova.wrapping_sub(m.start).wrapping_add(m.phys), m.flags))
    }
}

// --- random requests ----------------------------------------------------

/// Addresses that collide often, plus both ends of the 64-bit space.
fn addr() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => 0u64..48,
        2 => (u64::MAX - 24)..=u64::MAX,
        1 => any::<u64>(),
    ]
}

fn endpoint() -> impl Strategy<Value = u32> {
    prop_oneof![
        8 => prop::sample::select(REGISTERED.to_vec()),
        1 => prop::sample::select(vec![0u32, 4, u32::MAX]),
    ]
}

fn domain() -> impl Strategy<Value = u32> {
    prop::sample::select(DOMAINS.to_vec())
}

fn request() -> impl Strategy<Value = Request> {
    let reserved4 = prop_oneof![9 => Just([0u8; 4]), 1 => Just([0, 0, 1, 0])];
    prop_oneof![
        4 => (domain(), endpoint(), prop_oneof![8 => 0u32..2, 1 => Just(2u32)], reserved4.clone())
            .prop_map(|(domain, endpoint, flags, reserved)| Request::Attach(Attach {
                domain, endpoint, flags, reserved
            })),
        2 => (domain(), endpoint()).prop_map(|(domain, endpoint)| Request::Detach(Detach {
            domain, endpoint, reserved: [0; 8]
        })),
        8 => (domain(), addr(), addr(), any::<u64>(), prop_oneof![9 => 0u32..8, 1 => 8u32..16])
            .prop_map(|(domain, a, b, phys_start, flags)| {
                // Mostly ordered ranges, sometimes reversed ones.
                let (virt_start, virt_end) = if a % 8 == 7 { (b, a) } else { (a.min(b), a.max(b)) };
                Request::Map(Map { domain, virt_start, virt_end, phys_start, flags })
            }),
        5 => (domain(), addr(), addr(), reserved4).prop_map(|(domain, a, b, reserved)| {
            let (virt_start, virt_end) = if a % 8 == 7 { (b, a) } else { (a.min(b), a.max(b)) };
            Request::Unmap(Unmap { domain, virt_start, virt_end, reserved })
        }),
        1 => endpoint().prop_map(|endpoint| Request::Probe(Probe { endpoint, reserved: [0; 64] })),
    ]
}

/// How the request reaches the device.
#[derive(Clone, Debug)]
enum Wire {
    AsIs,
    /// Cut to this many bytes (modulo its length).
    Truncated(usize),
    /// With extra bytes after it.
    Trailing(Vec<u8>),
    /// With another type byte.
    Type(u8),
    /// With too little room for the answer.
    ShortWritable(usize),
}

fn wire() -> impl Strategy<Value = Wire> {
    prop_oneof![
        20 => Just(Wire::AsIs),
        1 => any::<usize>().prop_map(Wire::Truncated),
        1 => prop::collection::vec(any::<u8>(), 1..16).prop_map(Wire::Trailing),
        1 => prop_oneof![Just(0u8), 6u8..=255].prop_map(Wire::Type),
        1 => (0usize..516).prop_map(Wire::ShortWritable),
    ]
}

#[derive(Debug, PartialEq)]
enum Expect {
    Status(Status),
    BadHeadTail,
}

/// Send `req` over `wire` to the device, and work out what the model
/// expects from the bytes alone.
/// One request through `handle_request_into` with `reply`, which the
/// caller reuses across requests as the device does: what the previous
/// answer left in it must not show in this one.
fn run(
    dev: &mut Device,
    model: &mut Model,
    req: &Request,
    wire: &Wire,
    reply: &mut Reply,
) -> (Expect, Outcome) {
    let mut bytes = req.encode();
    let full = bytes.len();
    let mut writable = if matches!(req, Request::Probe(_)) {
        516
    } else {
        4
    };
    let expect = match wire {
        Wire::AsIs => Expect::Status(model.apply(req)),
        Wire::Trailing(extra) => {
            bytes.extend_from_slice(extra);
            Expect::Status(model.apply(req))
        }
        Wire::Truncated(n) => {
            bytes.truncate(n % full);
            if bytes.len() < 4 {
                Expect::BadHeadTail
            } else {
                Expect::Status(Status::Inval)
            }
        }
        Wire::Type(t) => {
            bytes[0] = *t;
            Expect::Status(Status::Unsupp)
        }
        Wire::ShortWritable(n) => {
            writable = n % writable;
            if writable < 4 {
                Expect::BadHeadTail
            } else {
                // Only PROBE answers need more than a tail.
                Expect::Status(Status::DevErr)
            }
        }
    };
    dev.handle_request_into(&bytes, writable, reply);
    let is_probe = bytes.first() == Some(&5);
    let got = match &reply.response {
        Response::BadHeadTail => Expect::BadHeadTail,
        Response::Used(out) => {
            let status = reply.response.status().unwrap();
            let answer_len = if is_probe && status != Status::DevErr {
                516
            } else {
                4
            };
            assert_eq!(out.len(), answer_len, "{req:?} {wire:?}");
            Expect::Status(status)
        }
    };
    (
        expect,
        Outcome {
            got,
            events: reply.events.clone(),
        },
    )
}

struct Outcome {
    got: Expect,
    events: Vec<NotifierEvent>,
}

/// What each endpoint's notifiers were told, replayed from the events.
#[derive(Default)]
struct Shadow {
    maps: BTreeMap<u32, Vec<(u64, u64, u64)>>,
    bypass: BTreeMap<u32, bool>,
}

impl Shadow {
    fn apply(&mut self, ev: &NotifierEvent) -> Result<(), TestCaseError> {
        match *ev {
            NotifierEvent::Map {
                endpoint,
                iova,
                end,
                phys,
                ..
            } => {
                let v = self.maps.entry(endpoint).or_default();
                prop_assert!(
                    v.iter().all(|&(s, e, _)| e < iova || end < s),
                    "map over a live mapping"
                );
                v.push((iova, end, phys));
            }
            NotifierEvent::Unmap {
                endpoint,
                iova,
                end,
            } => {
                // Unmaps also cover mappings never notified (MMIO, no
                // access), as in C; those are simply absent here.
                let v = self.maps.entry(endpoint).or_default();
                prop_assert!(
                    v.iter()
                        .all(|&(s, e, _)| (s == iova && e == end) || e < iova || end < s),
                    "unmap of part of a notified mapping"
                );
                v.retain(|&(s, e, _)| !(s == iova && e == end));
            }
            NotifierEvent::SwitchAddressSpace { endpoint, bypass } => {
                self.bypass.insert(endpoint, bypass);
            }
        }
        Ok(())
    }
}

fn device(input_end: u64, bypass: bool) -> Device {
    let config = Config::new(64, Granule::Size4K, 4096, bypass).unwrap();
    let mut dc = DeviceConfig::new(
        &config,
        &[ReservedRegion {
            start: 0xfee0_0000,
            end: 0xfeef_ffff,
            kind: 1,
        }],
    );
    dc.input_end = input_end;
    let mut dev = Device::new(dc, bypass);
    for ep in REGISTERED {
        dev.add_endpoint(ep);
    }
    dev
}

fn check_state(
    dev: &Device,
    model: &Model,
    shadow: &Shadow,
    probes: &[u64],
) -> Result<(), TestCaseError> {
    for &(ep, d) in &model.endpoints {
        prop_assert_eq!(dev.endpoint_domain(ep), d, "endpoint {}", ep);
        // The notifiers saw exactly the notifiable mappings of its domain.
        let mut seen = shadow.maps.get(&ep).cloned().unwrap_or_default();
        seen.sort_unstable();
        let expected: Vec<_> = d
            .and_then(|id| model.domains.iter().find(|x| x.id == id))
            .map(|dom| {
                let mut v: Vec<_> = dom
                    .maps
                    .iter()
                    .filter(|m| m.flags & 4 == 0 && m.flags & 3 != 0)
                    .map(|m| (m.start, m.end, m.phys))
                    .collect();
                v.sort_unstable();
                v
            })
            .unwrap_or_default();
        prop_assert_eq!(seen, expected, "shadow of endpoint {}", ep);
        if let Some(&b) = shadow.bypass.get(&ep) {
            prop_assert_eq!(b, dev.endpoint_bypassed(ep));
        }
    }
    let ids: Vec<u32> = {
        let mut v: Vec<u32> = model.domains.iter().map(|d| d.id).collect();
        v.sort_unstable();
        v
    };
    prop_assert_eq!(dev.domain_ids().collect::<Vec<_>>(), ids);
    for d in &model.domains {
        prop_assert_eq!(dev.domain_bypass(d.id), Some(d.bypass));
        prop_assert_eq!(dev.mappings(d.id).map(|m| m.len()), Some(d.maps.len()));
        prop_assert_eq!(dev.domain_endpoints(d.id), d.endpoints.clone());
        // Translation of the probe addresses and every mapping's edges.
        let edges = d.maps.iter().flat_map(|m| {
            [
                m.start.wrapping_sub(1),
                m.start,
                m.end,
                m.end.wrapping_add(1),
            ]
        });
        for iova in probes.iter().copied().chain(edges) {
            let got = dev
                .lookup(d.id, iova)
                .map(|m| (m.phys(iova), m.flags.bits()));
            prop_assert_eq!(
                got,
                model.lookup(d.id, iova),
                "domain {} iova {:#x}",
                d.id,
                iova
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn device_matches_the_model(
        input_end in prop_oneof![Just(u64::MAX), Just(u64::MAX - 8), Just(40u64)],
        bypass in any::<bool>(),
        steps in prop::collection::vec((request(), wire()), 1..80),
        probes in prop::collection::vec(addr(), 16),
    ) {
        let mut dev = device(input_end, bypass);
        let mut model = Model::new(input_end);
        let mut shadow = Shadow::default();
        let mut reused = Reply::default();
        for (req, wire) in &steps {
            let (expect, reply) = run(&mut dev, &mut model, req, wire, &mut reused);
            prop_assert_eq!(&reply.got, &expect, "{:?} over {:?}", req, wire);
            for ev in &reply.events {
                shadow.apply(ev)?;
            }
            check_state(&dev, &model, &shadow, &probes)?;
        }
        // A reset leaves nothing mapped in any notifier.
        for ev in dev.reset() {
            shadow.apply(&ev)?;
        }
        prop_assert!(shadow.maps.values().all(Vec::is_empty));
        prop_assert_eq!(dev.domain_ids().count(), 0);
    }
}

// --- views decide as the device translates ------------------------------

/// Whatever changes what translation reads.
#[derive(Clone, Debug)]
enum Step {
    Request(Request),
    SetBypass(bool),
    AddEndpoint(u32),
    AddUnmanaged(u32),
    RemoveEndpoint(u32),
    Reset,
    /// Keep a view, to check after later steps that it has not changed.
    KeepView,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        20 => request().prop_map(Step::Request),
        1 => any::<bool>().prop_map(Step::SetBypass),
        1 => endpoint().prop_map(Step::AddEndpoint),
        1 => endpoint().prop_map(Step::AddUnmanaged),
        1 => endpoint().prop_map(Step::RemoveEndpoint),
        1 => Just(Step::Reset),
        3 => Just(Step::KeepView),
    ]
}

/// Probe addresses: the model's, and both kinds of reserved region of
/// [`view_device`].
fn view_addr() -> impl Strategy<Value = u64> {
    prop_oneof![4 => addr(), 1 => 0x20u64..0x30]
}

/// A device whose reserved regions lie among the addresses `addr()`
/// favours: [0x20, 0x27] reserved, [0x28, 0x2f] MSI.
fn view_device(bypass: bool) -> Device {
    let config = Config::new(64, Granule::Size4K, 4096, bypass).unwrap();
    let regions = [
        ReservedRegion {
            start: 0x20,
            end: 0x27,
            kind: 0,
        },
        ReservedRegion {
            start: 0x28,
            end: 0x2f,
            kind: 1,
        },
    ];
    let mut dev = Device::new(DeviceConfig::new(&config, &regions), bypass);
    for ep in REGISTERED {
        dev.add_endpoint(ep);
    }
    dev
}

const ACCESSES: [Perm; 3] = [Perm::READ, Perm::WRITE, Perm::RW];

/// Every probe: each endpoint the steps name, each address, each access.
fn probes(addrs: &[u64]) -> Vec<(u32, u64, Perm)> {
    let endpoints = REGISTERED.iter().chain(&[0, 4, u32::MAX]);
    let mut out = Vec::new();
    for &ep in endpoints {
        for &iova in addrs {
            for access in ACCESSES {
                out.push((ep, iova, access));
            }
        }
    }
    out
}

/// Carry out one step of a view test on `dev`.
fn apply_step(dev: &mut Device, step: &Step) {
    match step {
        Step::Request(req) => {
            dev.handle_request(&req.encode(), 516);
        }
        Step::SetBypass(b) => {
            dev.set_bypass(*b);
        }
        Step::AddEndpoint(ep) => {
            dev.add_endpoint(*ep);
        }
        Step::AddUnmanaged(ep) => {
            dev.add_unmanaged_endpoint(*ep);
        }
        Step::RemoveEndpoint(ep) => {
            dev.remove_endpoint(*ep);
        }
        Step::Reset => {
            dev.reset();
        }
        Step::KeepView => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn views_decide_as_translate(
        bypass in any::<bool>(),
        steps in prop::collection::vec(step(), 1..60),
        addrs in prop::collection::vec(view_addr(), 12),
    ) {
        let mut dev = view_device(bypass);
        let probes = probes(&addrs);
        let mut kept: Vec<(TranslationView, Vec<Translated>)> = Vec::new();
        for step in &steps {
            apply_step(&mut dev, step);
            let view = dev.view();
            let raised_before = dev.counters().faults_raised();
            let mut answers = Vec::with_capacity(probes.len());
            let mut faults = 0;
            for &(ep, iova, access) in &probes {
                let decided = view.decide(ep, iova, access);
                let translated = dev.translate(ep, iova, access);
                prop_assert_eq!(decided, translated, "ep {} iova {:#x} {:?}", ep, iova, access);
                faults += u64::from(matches!(decided, Translated::Fault(_)));
                answers.push(decided);
            }
            // Deciding counted and queued nothing: the faults are
            // translate's.
            prop_assert_eq!(dev.counters().faults_raised(), raised_before + faults);
            dev.faults().clear();
            if matches!(step, Step::KeepView) {
                kept.push((view.clone(), answers));
            }
            for (old, answers) in &kept {
                for (&(ep, iova, access), &answer) in probes.iter().zip(answers) {
                    prop_assert_eq!(old.decide(ep, iova, access), answer);
                }
            }
        }
    }

    /// `take_changed` is what the glue republishes on: whenever it says
    /// nothing changed, the last view taken still decides every access as
    /// the device does.
    #[test]
    fn unchanged_means_the_last_view_still_holds(
        bypass in any::<bool>(),
        steps in prop::collection::vec(step(), 1..60),
        addrs in prop::collection::vec(view_addr(), 12),
    ) {
        let mut dev = view_device(bypass);
        let probes = probes(&addrs);
        dev.take_changed();
        let mut published = dev.view();
        for step in &steps {
            apply_step(&mut dev, step);
            if dev.take_changed() {
                published = dev.view();
            }
            for &(ep, iova, access) in &probes {
                prop_assert_eq!(
                    published.decide(ep, iova, access),
                    dev.translate(ep, iova, access),
                    "after {:?}: ep {} iova {:#x} {:?}", step, ep, iova, access
                );
            }
            dev.faults().clear();
        }
    }
}
