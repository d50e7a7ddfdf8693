// SPDX-License-Identifier: GPL-2.0-or-later

//! The device's state (endpoints, domains, mappings) and the request queue
//! handler, with the semantics of QEMU 10.2's C virtio-iommu except for the
//! deliberate differences marked `DIFFERENCE` below (and listed in
//! docs/requests.md).
//!
//! Endpoints exist when the glue registers them (the C device: when a PCI
//! device sits behind the IOMMU). Domains exist while an endpoint is
//! attached to them: ATTACH creates one, and it is freed with its mappings
//! when its last endpoint leaves, by DETACH or by an ATTACH elsewhere.
//!
//! What translation reads (the endpoint tables, the reserved regions and
//! each domain's mappings) is held in `Arc`s or persistent structures, so
//! that [`Device::view`] can snapshot it cheaply after every change for
//! readers that take no lock ([`crate::view`]); writers copy on write.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use crate::bypass::{BypassDevice, PciDeviceRef};
use crate::config::Config;
use crate::counters::Counters;
use crate::events::NotifierEvent;
use crate::fault::{Fault, FaultQueue};
use crate::mappings::{InsertError, MapFlags, Mapping, Mappings};
use crate::properties::{PropertyError, ReservedRegion};
use crate::request::{
    self, Attach, Detach, Map, Probe, Request, Unmap, ATTACH_F_BYPASS, HEAD_SIZE, TAIL_SIZE,
    T_PROBE,
};
use crate::reserved;
use crate::status::Status;
use crate::translate::TranslationState;
use crate::view::TranslationView;

/// What the request handler needs from the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceConfig {
    /// `input_range`: MAP outside it is refused.
    pub input_start: u64,
    pub input_end: u64,
    /// `domain_range`: ATTACH outside it is refused.
    pub domain_start: u32,
    pub domain_end: u32,
    /// Bytes of properties in a PROBE answer.
    pub probe_size: u32,
    /// The `reserved-regions` property, in the user's order.
    pub reserved_regions: Vec<ReservedRegion>,
    /// The `bypass-devices` property, in the user's order.
    pub bypass_devices: Vec<BypassDevice>,
}

impl DeviceConfig {
    /// From the advertised config space and the checked property.
    pub fn new(config: &Config, reserved_regions: &[ReservedRegion]) -> Self {
        Self {
            input_start: config.input_start,
            input_end: config.input_end,
            domain_start: config.domain_start,
            domain_end: config.domain_end,
            probe_size: config.probe_size,
            reserved_regions: reserved_regions.to_vec(),
            bypass_devices: Vec::new(),
        }
    }

    /// The same, with the checked `bypass-devices` property.
    #[must_use]
    pub fn with_bypass_devices(mut self, devices: &[BypassDevice]) -> Self {
        self.bypass_devices = devices.to_vec();
        self
    }
}

#[derive(Debug)]
pub(crate) struct Domain {
    bypass: bool,
    /// Attached endpoints, most recently attached first: the order of the
    /// C device's `endpoint_list` (ATTACH inserts at its head), which
    /// migration saves and which orders the events of MAP, UNMAP and reset.
    endpoints: VecDeque<u32>,
    mappings: Mappings,
}

impl Domain {
    /// A domain as migration restores it; `endpoints` in list order.
    pub(crate) fn new(bypass: bool, endpoints: Vec<u32>, mappings: Mappings) -> Self {
        Self {
            bypass,
            endpoints: endpoints.into(),
            mappings,
        }
    }
}

/// The answer to one request-queue element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// Copy these bytes to the start of the device-writable buffers, push
    /// the element with this used length, and notify.
    Used(Vec<u8>),
    /// Fewer than 4 device-readable or device-writable bytes. The C device
    /// calls `virtio_error(vdev, "virtio-iommu bad head/tail size")`,
    /// detaches the element without pushing it, and stops processing the
    /// queue (the device now needs a reset).
    BadHeadTail,
}

impl Response {
    /// The status the driver reads: the tail is always the last 4 bytes.
    pub fn status(&self) -> Option<Status> {
        match self {
            Self::Used(bytes) => Status::from_code(bytes.last_chunk::<TAIL_SIZE>()?[0]),
            Self::BadHeadTail => None,
        }
    }
}

/// The result of [`Device::handle_request`]. A caller answering many
/// requests keeps one and passes it to [`Device::handle_request_into`], so
/// that answering allocates nothing once its vectors have grown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub response: Response,
    /// To pass on, in order, after the request (see [`crate::events`]).
    pub events: Vec<NotifierEvent>,
}

impl Default for Reply {
    fn default() -> Self {
        Self {
            response: Response::Used(Vec::new()),
            events: Vec::new(),
        }
    }
}

/// The virtio-iommu state machine.
#[derive(Debug)]
pub struct Device {
    config: DeviceConfig,
    /// `config.reserved_regions` as endpoints see them.
    resv: Arc<[ReservedRegion]>,
    /// The config space's `bypass`: what unattached endpoints do.
    bypass: bool,
    /// Registered endpoints and the domain each is attached to. Shared
    /// with the views taken since it last changed (changes copy it: a few
    /// entries, on ATTACH, DETACH and hotplug only).
    endpoints: Arc<BTreeMap<u32, Option<u32>>>,
    /// Endpoints of the devices `bypass-devices` names: not managed by the
    /// IOMMU (requests see them as unknown) and never translated. Shared
    /// with views as `endpoints` is.
    unmanaged: Arc<BTreeSet<u32>>,
    /// Which `bypass-devices` elements have named a device so far.
    bypass_matched: Vec<bool>,
    domains: BTreeMap<u32, Domain>,
    faults: FaultQueue,
    counters: Counters,
    /// Something a translation depends on changed since
    /// [`Self::take_changed`] last said so: a published view is stale.
    changed: bool,
}

impl Device {
    /// A device with no endpoint yet; `bypass` is the config's initial
    /// `bypass` (the `boot-bypass` property).
    pub fn new(config: DeviceConfig, bypass: bool) -> Self {
        Self {
            resv: reserved::normalize(&config.reserved_regions).into(),
            bypass_matched: vec![false; config.bypass_devices.len()],
            config,
            bypass,
            endpoints: Arc::default(),
            unmanaged: Arc::default(),
            domains: BTreeMap::new(),
            faults: FaultQueue::default(),
            counters: Counters::default(),
            changed: true,
        }
    }

    /// Whether anything a translation depends on (endpoints, domains,
    /// mappings, `bypass`) changed since the last call: a
    /// [`TranslationView`] taken before is stale, and readers must get a
    /// new one before the change is acknowledged to the driver.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// What the device has done so far (introspection).
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn config(&self) -> &DeviceConfig {
        &self.config
    }

    /// The reserved regions PROBE reports: sorted, non-overlapping.
    pub fn reserved_regions(&self) -> &[ReservedRegion] {
        &self.resv
    }

    // --- endpoints, as the glue sees devices come and go ---------------

    /// Make `endpoint` known (a device behind the IOMMU). `false` if it
    /// already was.
    pub fn add_endpoint(&mut self, endpoint: u32) -> bool {
        if self.endpoints.contains_key(&endpoint) {
            return false;
        }
        Arc::make_mut(&mut self.endpoints).insert(endpoint, None);
        self.changed = true;
        true
    }

    /// Register the endpoint of a PCI device: unmanaged if a
    /// `bypass-devices` element names the device (see
    /// [`Self::add_unmanaged_endpoint`]), else managed. Returns whether it
    /// is unmanaged.
    pub fn add_pci_endpoint(&mut self, endpoint: u32, device: &PciDeviceRef<'_>) -> bool {
        let mut named = false;
        for (element, matched) in self
            .config
            .bypass_devices
            .iter()
            .zip(self.bypass_matched.iter_mut())
        {
            if element.matches(device) {
                *matched = true;
                named = true;
            }
        }
        if named {
            self.add_unmanaged_endpoint(endpoint);
        } else {
            self.add_endpoint(endpoint);
        }
        named
    }

    /// Whether a `bypass-devices` element names `device` (a question, not
    /// a registration: for firmware tables built before the device has its
    /// endpoint).
    /// Register the endpoint of a virtio-mmio device, named only by its
    /// qdev id (`qdev_id`): unmanaged if a `bypass-devices` element names
    /// it. Returns whether it is unmanaged.
    pub fn add_mmio_endpoint(&mut self, endpoint: u32, qdev_id: Option<&str>) -> bool {
        self.add_pci_endpoint(
            endpoint,
            &PciDeviceRef {
                id: qdev_id,
                root_bus: None,
                devfn: 0,
            },
        )
    }

    pub fn names_unmanaged(&self, device: &PciDeviceRef<'_>) -> bool {
        self.config
            .bypass_devices
            .iter()
            .any(|element| element.matches(device))
    }

    /// Make `endpoint` known as a device the IOMMU does not manage: its
    /// DMA is never translated whatever `bypass`, domains or resets say,
    /// and requests naming it are answered as for an unknown endpoint
    /// (NOENT, as the C device answers for an id it has no device for).
    /// `false` if it already was. Should a managed endpoint have the same
    /// id (two devices behind bridges the firmware has not numbered yet),
    /// the managed one wins until the glue tells them apart.
    pub fn add_unmanaged_endpoint(&mut self, endpoint: u32) -> bool {
        if self.unmanaged.contains(&endpoint) {
            return false;
        }
        self.changed = true;
        Arc::make_mut(&mut self.unmanaged).insert(endpoint)
    }

    /// Whether `endpoint` is unmanaged (and no managed endpoint shares its
    /// id).
    pub fn is_unmanaged(&self, endpoint: u32) -> bool {
        self.unmanaged_endpoint(endpoint)
    }

    /// At start (once every cold-plugged device has its endpoint): the
    /// first `bypass-devices` element that named no device.
    pub fn check_bypass_devices(&self) -> Result<(), PropertyError> {
        match self
            .bypass_matched
            .iter()
            .zip(&self.config.bypass_devices)
            .enumerate()
            .find(|(_, (&matched, _))| !matched)
        {
            None => Ok(()),
            Some((index, (_, element))) => Err(PropertyError::BypassDeviceUnmatched {
                index,
                text: element.to_string(),
            }),
        }
    }

    /// Forget `endpoint`, detaching it first (with the events of a
    /// detach). The C device never forgets an endpoint.
    pub fn remove_endpoint(&mut self, endpoint: u32) -> Vec<NotifierEvent> {
        let mut events = Vec::new();
        self.detach_endpoint(endpoint, &mut events);
        self.changed = true;
        if self.endpoints.contains_key(&endpoint) {
            Arc::make_mut(&mut self.endpoints).remove(&endpoint);
        }
        if self.unmanaged.contains(&endpoint) {
            Arc::make_mut(&mut self.unmanaged).remove(&endpoint);
        }
        events
    }

    pub fn has_endpoint(&self, endpoint: u32) -> bool {
        self.endpoints.contains_key(&endpoint)
    }

    /// The domain `endpoint` is attached to.
    pub fn endpoint_domain(&self, endpoint: u32) -> Option<u32> {
        self.endpoints.get(&endpoint).copied().flatten()
    }

    /// Whether `endpoint`'s DMA bypasses translation: always for an
    /// unmanaged endpoint; else its domain's kind if attached, else the
    /// config's `bypass` (spec 5.13.6, "bypass mode").
    pub fn endpoint_bypassed(&self, endpoint: u32) -> bool {
        if self.is_unmanaged(endpoint) {
            return true;
        }
        self.endpoint_domain(endpoint)
            .and_then(|d| self.domains.get(&d))
            .map_or(self.bypass, |d| d.bypass)
    }

    // --- the config space's bypass --------------------------------------

    pub fn bypass(&self) -> bool {
        self.bypass
    }

    /// A new `bypass` value (a driver write the config code accepted, or a
    /// system reset restoring `boot-bypass`): every endpoint's address
    /// space is switched again, as in C.
    pub fn set_bypass(&mut self, bypass: bool) -> Vec<NotifierEvent> {
        self.bypass = bypass;
        self.changed = true;
        self.endpoints
            .keys()
            .map(|&endpoint| NotifierEvent::SwitchAddressSpace {
                endpoint,
                bypass: self.endpoint_bypassed(endpoint),
            })
            .collect()
    }

    // --- domains and mappings, read-only --------------------------------

    /// Ids of the existing domains, ascending.
    pub fn domain_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.domains.keys().copied()
    }

    /// Whether domain `id` is a bypass domain; `None` if it does not exist.
    pub fn domain_bypass(&self, id: u32) -> Option<bool> {
        self.domains.get(&id).map(|d| d.bypass)
    }

    /// The endpoints attached to domain `id`, most recently attached
    /// first (the C device's list order, which migration saves); an
    /// endpoint attached again to the same domain moves to the front.
    pub fn domain_endpoints(&self, id: u32) -> Vec<u32> {
        self.domains
            .get(&id)
            .map(|d| d.endpoints.iter().copied().collect())
            .unwrap_or_default()
    }

    pub fn mappings(&self, id: u32) -> Option<&Mappings> {
        self.domains.get(&id).map(|d| &d.mappings)
    }

    /// The mapping of domain `id` holding `iova`.
    pub fn lookup(&self, id: u32, iova: u64) -> Option<Mapping> {
        self.domains.get(&id)?.mappings.lookup(iova)
    }

    /// Map events of every mapping `endpoint` sees: for a notifier that was
    /// just registered (the C device's `replay` callback).
    pub fn replay(&self, endpoint: u32) -> Vec<NotifierEvent> {
        self.endpoint_domain(endpoint)
            .and_then(|d| self.domains.get(&d))
            .map(|d| {
                d.mappings
                    .iter()
                    .filter_map(|m| NotifierEvent::map(endpoint, &m))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Device reset: every endpoint is detached (with its events) and every
    /// domain freed; pending faults are dropped. Endpoints stay registered
    /// and `bypass` is kept, as it survives a device reset.
    pub fn reset(&mut self) -> Vec<NotifierEvent> {
        let mut events = Vec::new();
        self.detach_all(&mut events);
        self.faults.clear();
        self.changed = true;
        events
    }

    /// The attached endpoints: domains ascending, each in list order, as
    /// the C device walks its domain tree.
    fn attached_endpoints(&self) -> Vec<u32> {
        self.domains
            .values()
            .flat_map(|d| d.endpoints.iter().copied())
            .collect()
    }

    /// Detach every endpoint (in [`Self::attached_endpoints`]' order, as
    /// the C device destroys its domain tree), which frees every domain.
    fn detach_all(&mut self, events: &mut Vec<NotifierEvent>) {
        for endpoint in self.attached_endpoints() {
            self.detach_endpoint(endpoint, events);
        }
        self.domains.clear();
    }

    /// For migration ([`crate::migration`]): detach everything, then make
    /// `domains` (checked by the caller: their endpoints are registered,
    /// each in one domain) the device's domains and `bypass` its config
    /// bypass. Returns what a notifier user must hear: the detach events,
    /// an address-space switch for every endpoint, then a replay of the
    /// mappings of every attached endpoint.
    pub(crate) fn replace_domains(
        &mut self,
        domains: BTreeMap<u32, Domain>,
        bypass: bool,
    ) -> Vec<NotifierEvent> {
        let mut events = Vec::new();
        self.detach_all(&mut events);
        let table = Arc::make_mut(&mut self.endpoints);
        for (&id, domain) in &domains {
            for endpoint in &domain.endpoints {
                if let Some(slot) = table.get_mut(endpoint) {
                    *slot = Some(id);
                }
            }
        }
        self.domains = domains;
        self.changed = true;
        events.extend(self.set_bypass(bypass));
        for endpoint in self.attached_endpoints() {
            events.extend(self.replay(endpoint));
        }
        events
    }

    pub fn faults(&mut self) -> &mut FaultQueue {
        &mut self.faults
    }

    // --- the request queue ----------------------------------------------

    /// Handle one request-queue element: `readable` is the concatenation of
    /// its device-readable buffers, `writable_len` the total size of its
    /// device-writable ones.
    pub fn handle_request(&mut self, readable: &[u8], writable_len: usize) -> Reply {
        let mut reply = Reply::default();
        self.handle_request_into(readable, writable_len, &mut reply);
        reply
    }

    /// [`Device::handle_request`], answering into `reply` (whatever it
    /// held is replaced) and reusing its vectors' memory.
    pub fn handle_request_into(&mut self, readable: &[u8], writable_len: usize, reply: &mut Reply) {
        reply.events.clear();
        let mut answer = match std::mem::replace(&mut reply.response, Response::BadHeadTail) {
            Response::Used(bytes) => bytes,
            Response::BadHeadTail => Vec::new(),
        };
        answer.clear();
        if readable.len() < HEAD_SIZE || writable_len < TAIL_SIZE {
            self.counters.count_malformed_chain();
            return;
        }
        let decoded = request::decode(readable);
        if readable.first() == Some(&T_PROBE) {
            self.answer_probe(decoded, writable_len, &mut answer);
        } else {
            let status = match decoded {
                Ok(req) => self.apply(&req, &mut reply.events),
                Err(e) => e.status(),
            };
            answer.extend_from_slice(&request::tail(status));
        }
        // The status is the first byte of the tail, which ends the answer.
        let status = answer
            .len()
            .checked_sub(TAIL_SIZE)
            .and_then(|at| answer.get(at));
        if let (Some(&kind), Some(&status)) = (readable.first(), status) {
            self.counters.count_request(kind, status);
        }
        reply.response = Response::Used(answer);
    }

    /// A PROBE answer fills `probe_size` bytes of properties and the tail
    /// after them, whatever the status. If the driver's buffer is smaller,
    /// the C device writes only a tail, at offset 0, with DEVERR.
    fn answer_probe(
        &self,
        decoded: Result<Request, request::DecodeError>,
        writable_len: usize,
        out: &mut Vec<u8>,
    ) {
        let probe_size = usize::try_from(self.config.probe_size).unwrap_or(usize::MAX);
        let fits = probe_size
            .checked_add(TAIL_SIZE)
            .is_some_and(|needed| needed <= writable_len);
        if !fits {
            out.extend_from_slice(&request::tail(Status::DevErr));
            return;
        }
        let status = match decoded {
            Ok(Request::Probe(p)) => match self.probe_properties(&p) {
                Ok(props) => {
                    out.extend_from_slice(&props);
                    Status::Ok
                }
                Err(status) => status,
            },
            Ok(_) => Status::DevErr,
            Err(e) => e.status(),
        };
        // Zeroed properties with any status but OK.
        out.resize(probe_size, 0);
        out.extend_from_slice(&request::tail(status));
    }

    /// Carry out a decoded request; the status to answer. Events go to
    /// `events`. (PROBE has no side effect: only its status is computed.)
    pub fn apply(&mut self, req: &Request, events: &mut Vec<NotifierEvent>) -> Status {
        let status = match req {
            Request::Attach(a) => self.attach(a, events),
            Request::Detach(d) => self.detach(d, events),
            Request::Map(m) => self.map(m, events),
            Request::Unmap(u) => self.unmap(u, events),
            Request::Probe(p) => {
                return match self.probe_properties(p) {
                    Ok(_) => Status::Ok,
                    Err(status) => status,
                }
            }
        };
        // A refused request changes nothing (UNMAP is atomic, a failed
        // ATTACH leaves the endpoint where it was).
        self.changed |= status == Status::Ok;
        status
    }

    fn attach(&mut self, a: &Attach, events: &mut Vec<NotifierEvent>) -> Status {
        if a.flags & !ATTACH_F_BYPASS != 0 {
            return Status::Inval;
        }
        // DIFFERENCE: the spec says MUST (5.13.6.3.2); C ignores reserved.
        if a.reserved != [0; 4] {
            return Status::Inval;
        }
        let Some(&current) = self.endpoints.get(&a.endpoint) else {
            return Status::NoEnt;
        };
        // Unreachable with the advertised range (all of u32), as in C.
        if !(self.config.domain_start..=self.config.domain_end).contains(&a.domain) {
            return Status::Range;
        }
        let bypass = a.flags & ATTACH_F_BYPASS != 0;
        // The C device first detaches the endpoint, freeing its old domain
        // if it was the last one there, and only then finds the target
        // domain: so the target exists afterwards unless it is the old
        // domain and the endpoint was alone in it.
        // DIFFERENCE: the bypass-flag mismatch is checked before anything
        // changes, so a refused ATTACH leaves the endpoint attached where it
        // was (C has already detached it when it answers INVAL).
        if let Some(target) = self.domains.get(&a.domain) {
            let survives = current != Some(a.domain) || target.endpoints.len() > 1;
            if survives && target.bypass != bypass {
                return Status::Inval;
            }
        }
        self.detach_endpoint(a.endpoint, events);
        let domain = self.domains.entry(a.domain).or_insert_with(|| Domain {
            bypass,
            endpoints: VecDeque::new(),
            mappings: Mappings::new(),
        });
        // At the head, as C's QLIST_INSERT_HEAD; the detach above took the
        // endpoint out of the list if it was already in this domain.
        domain.endpoints.push_front(a.endpoint);
        Arc::make_mut(&mut self.endpoints).insert(a.endpoint, Some(a.domain));
        events.push(NotifierEvent::SwitchAddressSpace {
            endpoint: a.endpoint,
            bypass: domain.bypass,
        });
        events.extend(
            domain
                .mappings
                .iter()
                .filter_map(|m| NotifierEvent::map(a.endpoint, &m)),
        );
        Status::Ok
    }

    fn detach(&mut self, d: &Detach, events: &mut Vec<NotifierEvent>) -> Status {
        // C answers NOENT for an endpoint that exists but is not attached,
        // as it only keeps records of attached endpoints.
        match self.endpoint_domain(d.endpoint) {
            None => Status::NoEnt,
            Some(current) if current != d.domain => Status::Inval,
            Some(_) => {
                self.detach_endpoint(d.endpoint, events);
                Status::Ok
            }
        }
    }

    /// Detach `endpoint` from its domain, if any: unmap events for all of
    /// the domain's mappings, then the address-space switch; the domain is
    /// freed if no endpoint is left in it.
    fn detach_endpoint(&mut self, endpoint: u32, events: &mut Vec<NotifierEvent>) {
        let Some(id) = self.endpoint_domain(endpoint) else {
            return;
        };
        Arc::make_mut(&mut self.endpoints).insert(endpoint, None);
        if let Some(domain) = self.domains.get_mut(&id) {
            events.extend(
                domain
                    .mappings
                    .iter()
                    .map(|m| NotifierEvent::unmap(endpoint, &m)),
            );
            domain.endpoints.retain(|&e| e != endpoint);
            if domain.endpoints.is_empty() {
                self.domains.remove(&id);
            }
        }
        events.push(NotifierEvent::SwitchAddressSpace {
            endpoint,
            bypass: self.bypass,
        });
    }

    fn map(&mut self, m: &Map, events: &mut Vec<NotifierEvent>) -> Status {
        let Some(flags) = MapFlags::from_bits(m.flags) else {
            return Status::Inval;
        };
        let Some(domain) = self.domains.get_mut(&m.domain) else {
            return Status::NoEnt;
        };
        if domain.bypass {
            return Status::Inval;
        }
        // DIFFERENCE: C accepts a reversed range or one outside
        // input_range; the spec's driver MUSTs forbid both (5.13.6.1,
        // 5.13.6.5.1) and "any mapping request to virtual addresses outside
        // of this range fails" (5.13.6).
        if m.virt_start > m.virt_end
            || m.virt_start < self.config.input_start
            || m.virt_end > self.config.input_end
        {
            return Status::Range;
        }
        let mapping = Mapping {
            virt_start: m.virt_start,
            virt_end: m.virt_end,
            phys_start: m.phys_start,
            flags,
        };
        match domain.mappings.insert(mapping) {
            Ok(()) => {}
            Err(InsertError::Overlap) => return Status::Inval,
            Err(InsertError::Reversed) => return Status::Range,
        }
        events.extend(
            domain
                .endpoints
                .iter()
                .filter_map(|&ep| NotifierEvent::map(ep, &mapping)),
        );
        Status::Ok
    }

    fn unmap(&mut self, u: &Unmap, events: &mut Vec<NotifierEvent>) -> Status {
        let Some(domain) = self.domains.get_mut(&u.domain) else {
            return Status::NoEnt;
        };
        if domain.bypass {
            return Status::Inval;
        }
        // DIFFERENCE: a reversed range is RANGE, like MAP's (in C its
        // status depends on whether a mapping spans the reversed bounds).
        if u.virt_start > u.virt_end {
            return Status::Range;
        }
        // DIFFERENCE: atomic. C removes the covered mappings it meets
        // before the one that would be split, then answers RANGE; the spec
        // says it SHOULD NOT remove any (5.13.6.6.2).
        let endpoints = &domain.endpoints;
        let removed = domain
            .mappings
            .remove_range_with(u.virt_start, u.virt_end, |m| {
                events.extend(endpoints.iter().map(|&ep| NotifierEvent::unmap(ep, &m)));
            });
        match removed {
            Err(_) => Status::Range,
            Ok(()) => Status::Ok,
        }
    }

    /// The `properties` bytes (exactly `probe_size`) of a PROBE answer.
    pub fn probe_properties(&self, p: &Probe) -> Result<Vec<u8>, Status> {
        if !self.endpoints.contains_key(&p.endpoint) {
            return Err(Status::NoEnt);
        }
        let probe_size = usize::try_from(self.config.probe_size).unwrap_or(usize::MAX);
        reserved::encode_properties(&self.resv, probe_size).ok_or(Status::Inval)
    }

    /// Queue the report of a refused translation for the event queue (and
    /// count it). [`Self::translate`] does it itself; a refusal decided on
    /// a [`TranslationView`] is reported through this.
    pub fn queue_fault(&mut self, fault: Fault) {
        self.counters.count_fault();
        self.faults.push(fault);
    }

    // --- lock-free translation ------------------------------------------

    /// An immutable snapshot of what translation reads, deciding every
    /// access as [`Self::translate`] would now (see [`crate::view`]).
    /// Costs one allocation and a reference count per domain (and three
    /// more): the mappings are shared, not copied.
    pub fn view(&self) -> TranslationView {
        TranslationView::new(
            self.bypass,
            Arc::clone(&self.resv),
            Arc::clone(&self.endpoints),
            Arc::clone(&self.unmanaged),
            self.domains
                .iter()
                .map(|(&id, d)| (id, d.bypass, d.mappings.clone())),
        )
    }
}

impl TranslationState for Device {
    fn config_bypass(&self) -> bool {
        self.bypass
    }

    fn reserved(&self) -> &[ReservedRegion] {
        &self.resv
    }

    fn endpoints(&self) -> &BTreeMap<u32, Option<u32>> {
        &self.endpoints
    }

    fn unmanaged(&self) -> &BTreeSet<u32> {
        &self.unmanaged
    }

    fn domain(&self, id: u32) -> Option<(bool, &Mappings)> {
        self.domains.get(&id).map(|d| (d.bypass, &d.mappings))
    }
}
