// SPDX-License-Identifier: GPL-2.0-or-later

//! Live migration: the bytes of QEMU 10.2's vmstate `virtio-iommu-device`
//! version 2, saved and loaded exactly as the C device's `VMStateInfo`s
//! (`gtree`, `qlist`, `bool`, `uint8`) write them, so that either device can
//! migrate to the other. All integers are big-endian:
//!
//! ```text
//! be32 number of domains
//! per domain, by ascending id:
//!     u8 1, be64 tree key (= the id)
//!     be32 id
//!     be32 number of mappings
//!     per mapping, by ascending IOVA:
//!         u8 1, be64 virt_start, be64 virt_end (inclusive),
//!         be64 phys_start, be32 flags
//!     u8 0
//!     per attached endpoint, in list order (most recently attached first):
//!         u8 1, be32 endpoint id
//!     u8 0
//!     u8 bypass (0 or 1)
//! u8 0
//! u8 config bypass (0 or 1)
//! ```
//!
//! Endpoints that are not PCI requester ids (above `0xffff`: virtio-mmio
//! transports on arm virt) are not in that layout: the C device has no
//! such endpoints and would abort on loading one. They travel in a
//! subsection only this device sends, only when there are some
//! ([`Device::has_extra_endpoints`]), so that a C destination refuses the
//! stream cleanly (an unknown subsection) instead:
//!
//! ```text
//! be32 number of entries
//! per entry, by ascending endpoint id: be32 domain id, be32 endpoint id
//! ```
//!
//! Loading is two steps: [`load_state`] parses and checks the structure
//! into a [`SavedState`] (nothing of the device is needed), then
//! [`Device::restore`] checks it against the device (endpoints, ranges) and
//! replaces the device's domains with it, or changes nothing.
//!
//! Decisions:
//!
//! - Pending fault reports and the dropped-fault counter are not saved, and
//!   a restore leaves the destination's own untouched: the C device keeps no
//!   queue (a fault it cannot write to the event queue at once is lost), so
//!   its stream has no place for them. A report not yet delivered at the
//!   source is lost as if the event queue had had no buffer.
//! - The loader is stricter than C's, which takes any non-zero byte as
//!   `true`, any `config.bypass` byte, and whatever node order the stream
//!   has: here markers and booleans must be 0 or 1, the number of nodes
//!   must equal the count exactly, domains must come by strictly ascending
//!   id and mappings by strictly ascending, disjoint intervals, as C's writer
//!   always sends them. So a stream that loads saves again to the same
//!   bytes.
//! - An endpoint may appear only once in the whole stream: C would link the
//!   same endpoint into two lists.
//! - Mappings outside `input_range`, domain ids outside `domain_range` and
//!   reversed intervals are refused, although C accepts such MAPs: this core
//!   never creates them (see the `DIFFERENCE`s in [`crate::device`]), so
//!   refusing keeps its invariants.
//! - A domain with no endpoint is accepted by [`load_state`] (C may save
//!   one) and dropped by [`Device::restore`], without the device checks:
//!   this core frees a domain with its last endpoint, and such a domain is
//!   invisible to translation and notifiers. (A MAP naming it afterwards is
//!   answered NOENT, as for any domain this core has freed.)

use std::collections::BTreeMap;
use std::fmt;

use crate::device::{Device, Domain};
use crate::events::NotifierEvent;
use crate::mappings::{InsertError, MapFlags, Mapping, Mappings};

/// The vmstate this module reads and writes, and its version.
pub const VMSTATE_NAME: &str = "virtio-iommu-device";
pub const VMSTATE_VERSION: u32 = 2;

/// Node markers of QEMU's `gtree` and `qlist` encodings.
const MORE: u8 = 1;
const END: u8 = 0;

/// A source of big-endian integers: a byte slice here, a `QEMUFile` in the
/// glue. An implementation returns [`MigrationError::Truncated`] (with no
/// field: the loader names it) when the stream ends or fails.
pub trait StreamReader {
    fn read_u8(&mut self) -> Result<u8, MigrationError>;
    fn read_be32(&mut self) -> Result<u32, MigrationError>;
    fn read_be64(&mut self) -> Result<u64, MigrationError>;
}

/// Reads from the front of the slice, which keeps what is left.
impl StreamReader for &[u8] {
    fn read_u8(&mut self) -> Result<u8, MigrationError> {
        take::<1>(self).map(|[b]| b)
    }

    fn read_be32(&mut self) -> Result<u32, MigrationError> {
        take(self).map(u32::from_be_bytes)
    }

    fn read_be64(&mut self) -> Result<u64, MigrationError> {
        take(self).map(u64::from_be_bytes)
    }
}

fn take<const N: usize>(bytes: &mut &[u8]) -> Result<[u8; N], MigrationError> {
    let (chunk, rest) = bytes
        .split_first_chunk::<N>()
        .ok_or(MigrationError::Truncated { field: None })?;
    *bytes = rest;
    Ok(*chunk)
}

/// One domain as migrated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedDomain {
    pub id: u32,
    pub bypass: bool,
    /// In stream order: the list order, most recently attached first.
    pub endpoints: Vec<u32>,
    /// In stream order: ascending IOVA.
    pub mappings: Vec<Mapping>,
}

/// The migrated state of the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedState {
    /// By ascending id.
    pub domains: Vec<SavedDomain>,
    /// The config space's `bypass`.
    pub bypass: bool,
}

/// An inclusive IOVA range, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    pub low: u64,
    pub high: u64,
}

impl Interval {
    fn of(m: &Mapping) -> Self {
        Self {
            low: m.virt_start,
            high: m.virt_end,
        }
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x}]", self.low, self.high)
    }
}

/// Which gtree a node count belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tree {
    Domains,
    Mappings { domain: u32 },
}

impl fmt::Display for Tree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Domains => write!(f, "the domain tree"),
            Self::Mappings { domain } => write!(f, "the mapping tree of domain {domain}"),
        }
    }
}

/// Where in the stream the loader was, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    DomainCount,
    DomainMarker,
    /// The tree key of the domain after `previous` (`None`: the first).
    DomainKey {
        previous: Option<u32>,
    },
    DomainId {
        key: u64,
    },
    MappingCount {
        domain: u32,
    },
    MappingMarker {
        domain: u32,
    },
    Mapping {
        domain: u32,
    },
    EndpointMarker {
        domain: u32,
    },
    Endpoint {
        domain: u32,
    },
    DomainBypass {
        domain: u32,
    },
    ConfigBypass,
    ExtraCount,
    ExtraEntry,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DomainCount => write!(f, "the number of domains"),
            Self::DomainMarker => write!(f, "a node marker of the domain tree"),
            Self::DomainKey { previous: None } => write!(f, "the key of the first domain"),
            Self::DomainKey { previous: Some(id) } => {
                write!(f, "the key of the domain after domain {id}")
            }
            Self::DomainId { key } => write!(f, "the id of the domain with key {key:#x}"),
            Self::MappingCount { domain } => {
                write!(f, "the number of mappings of domain {domain}")
            }
            Self::MappingMarker { domain } => {
                write!(f, "a node marker of the mapping tree of domain {domain}")
            }
            Self::Mapping { domain } => write!(f, "a mapping of domain {domain}"),
            Self::EndpointMarker { domain } => {
                write!(f, "a marker of the endpoint list of domain {domain}")
            }
            Self::Endpoint { domain } => write!(f, "an endpoint id of domain {domain}"),
            Self::DomainBypass { domain } => write!(f, "the bypass flag of domain {domain}"),
            Self::ConfigBypass => write!(f, "the config bypass byte"),
            Self::ExtraCount => write!(f, "the number of non-PCI endpoints"),
            Self::ExtraEntry => write!(f, "a non-PCI endpoint"),
        }
    }
}

/// Why a migration stream was not loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MigrationError {
    // --- the stream ----------------------------------------------------
    /// The stream ended (or its reader failed) while reading `field`;
    /// readers leave `field` to the loader.
    Truncated { field: Option<Field> },
    /// A node or list marker that is neither 1 (a node follows) nor 0.
    BadMarker { field: Field, value: u8 },
    /// A tree holds more or fewer nodes than its count said.
    NodeCount {
        tree: Tree,
        declared: u32,
        /// The nodes read; one more than `declared` if too many came.
        found: u64,
    },
    /// A domain's tree key is not its id.
    KeyMismatch { key: u64, id: u32 },
    /// A domain's bypass flag is neither 0 nor 1.
    BadDomainBypass { domain: u32, value: u8 },
    /// The config bypass byte is neither 0 nor 1.
    BadConfigBypass { value: u8 },
    /// A mapping with a flag bit the device does not know.
    UnknownMapFlags {
        domain: u32,
        interval: Interval,
        flags: u32,
    },
    // --- the state's consistency --------------------------------------
    /// The same domain id twice.
    DuplicateDomain { domain: u32 },
    /// Domain ids not ascending (C always saves them ascending).
    DomainsOutOfOrder { previous: u32, domain: u32 },
    /// A mapping whose interval ends before it starts.
    ReversedInterval { domain: u32, interval: Interval },
    /// Two mappings of one domain share addresses.
    OverlappingMappings {
        domain: u32,
        first: Interval,
        second: Interval,
    },
    /// Disjoint mappings not by ascending IOVA (C always saves them so).
    MappingsOutOfOrder {
        domain: u32,
        previous: Interval,
        interval: Interval,
    },
    /// A bypass domain has mappings (MAP refuses them).
    MappingInBypassDomain { domain: u32, interval: Interval },
    /// An endpoint listed twice, in one domain or in two.
    DuplicateEndpoint {
        endpoint: u32,
        first_domain: u32,
        domain: u32,
    },
    /// A non-PCI endpoint attached to a domain the stream does not have.
    ExtraEndpointDomain { endpoint: u32, domain: u32 },
    /// A PCI requester id in the non-PCI endpoints.
    PciEndpointInExtra { endpoint: u32, domain: u32 },
    // --- the destination device ---------------------------------------
    /// No device behind the destination IOMMU has this endpoint id.
    UnknownEndpoint { endpoint: u32, domain: u32 },
    /// The glue knows the endpoint but never registered it with the core.
    UnregisteredEndpoint { endpoint: u32, domain: u32 },
    /// The endpoint's device is in `bypass-devices` at the destination.
    UnmanagedEndpoint { endpoint: u32, domain: u32 },
    /// A domain id outside the destination's `domain_range`.
    DomainOutOfRange { domain: u32, start: u32, end: u32 },
    /// A mapping outside the destination's `input_range`.
    MappingOutOfRange {
        domain: u32,
        interval: Interval,
        start: u64,
        end: u64,
    },
}

impl fmt::Display for MigrationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { field: None } => write!(f, "the migration stream ends early"),
            Self::Truncated { field: Some(at) } => {
                write!(f, "the migration stream ends early, in {at}")
            }
            Self::BadMarker { field, value } => {
                write!(f, "{field} is {value:#x}, not 0 or 1")
            }
            Self::NodeCount {
                tree,
                declared,
                found,
            } => {
                if u64::from(*declared) < *found {
                    write!(f, "{tree} counts {declared} nodes, but more follow")
                } else {
                    write!(f, "{tree} counts {declared} nodes, but {found} follow")
                }
            }
            Self::KeyMismatch { key, id } => {
                write!(f, "domain {id} is saved under the tree key {key:#x}")
            }
            Self::BadDomainBypass { domain, value } => {
                write!(f, "the bypass flag of domain {domain} is {value:#x}, not 0 or 1")
            }
            Self::BadConfigBypass { value } => {
                write!(f, "the config bypass byte is {value:#x}, not 0 or 1")
            }
            Self::UnknownMapFlags {
                domain,
                interval,
                flags,
            } => write!(
                f,
                "mapping {interval} of domain {domain} has unknown flags {flags:#x}"
            ),
            Self::DuplicateDomain { domain } => write!(f, "domain {domain} is saved twice"),
            Self::DomainsOutOfOrder { previous, domain } => {
                write!(f, "domain {domain} comes after domain {previous}")
            }
            Self::ReversedInterval { domain, interval } => write!(
                f,
                "mapping {interval} of domain {domain} ends before it starts"
            ),
            Self::OverlappingMappings {
                domain,
                first,
                second,
            } => write!(f, "mappings {first} and {second} of domain {domain} overlap"),
            Self::MappingsOutOfOrder {
                domain,
                previous,
                interval,
            } => write!(
                f,
                "mapping {interval} of domain {domain} comes after mapping {previous}"
            ),
            Self::MappingInBypassDomain { domain, interval } => write!(
                f,
                "bypass domain {domain} has a mapping {interval}, which MAP refuses"
            ),
            Self::DuplicateEndpoint {
                endpoint,
                first_domain,
                domain,
            } => {
                if first_domain == domain {
                    write!(f, "endpoint {endpoint:#x} is listed twice in domain {domain}")
                } else {
                    write!(
                        f,
                        "endpoint {endpoint:#x} is attached to both domain {first_domain} and domain {domain}"
                    )
                }
            }
            Self::ExtraEndpointDomain { endpoint, domain } => write!(
                f,
                "non-PCI endpoint {endpoint:#x} is attached to domain {domain}, \
                 which the stream does not have"
            ),
            Self::PciEndpointInExtra { endpoint, domain } => write!(
                f,
                "endpoint {endpoint:#x} (domain {domain}) is a PCI requester id, \
                 listed among the non-PCI endpoints"
            ),
            Self::UnknownEndpoint { endpoint, domain } => write!(
                f,
                "endpoint {endpoint:#x} (attached to domain {domain}) has no device behind this IOMMU"
            ),
            Self::UnregisteredEndpoint { endpoint, domain } => write!(
                f,
                "endpoint {endpoint:#x} (attached to domain {domain}) is not registered with the device"
            ),
            Self::UnmanagedEndpoint { endpoint, domain } => write!(
                f,
                "endpoint {endpoint:#x} (attached to domain {domain}) belongs to a device in bypass-devices here"
            ),
            Self::DomainOutOfRange { domain, start, end } => write!(
                f,
                "domain {domain} is outside this device's domain range [{start}, {end}]"
            ),
            Self::MappingOutOfRange {
                domain,
                interval,
                start,
                end,
            } => write!(
                f,
                "mapping {interval} of domain {domain} is outside this device's input range [{start:#x}, {end:#x}]"
            ),
        }
    }
}

impl std::error::Error for MigrationError {}

// --- saving -----------------------------------------------------------------

impl Device {
    /// Append the device's vmstate (see the module doc) to `out`.
    pub fn save_state(&self, out: &mut Vec<u8>) {
        put_be32(out, count(self.domain_ids().count()));
        for id in self.domain_ids() {
            out.push(MORE);
            out.extend_from_slice(&u64::from(id).to_be_bytes());
            put_be32(out, id);
            let mappings = self.mappings(id);
            put_be32(out, count(mappings.map_or(0, Mappings::len)));
            for m in mappings.into_iter().flat_map(Mappings::iter) {
                out.push(MORE);
                out.extend_from_slice(&m.virt_start.to_be_bytes());
                out.extend_from_slice(&m.virt_end.to_be_bytes());
                out.extend_from_slice(&m.phys_start.to_be_bytes());
                put_be32(out, m.flags.bits());
            }
            out.push(END);
            for endpoint in self.domain_endpoints(id).into_iter().filter(|&e| is_pci(e)) {
                out.push(MORE);
                put_be32(out, endpoint);
            }
            out.push(END);
            out.push(self.domain_bypass(id).unwrap_or(false).into());
        }
        out.push(END);
        out.push(self.bypass().into());
    }
}

impl Device {
    /// Whether an endpoint that is not a PCI requester id is attached, for
    /// the subsection only this device sends.
    pub fn has_extra_endpoints(&self) -> bool {
        self.domain_ids()
            .any(|id| self.domain_endpoints(id).into_iter().any(|e| !is_pci(e)))
    }

    /// The subsection: the attached endpoints above the PCI requester ids,
    /// with their domains.
    pub fn save_extra_endpoints(&self, out: &mut Vec<u8>) {
        let mut extra: Vec<(u32, u32)> = self
            .domain_ids()
            .flat_map(|d| {
                self.domain_endpoints(d)
                    .into_iter()
                    .filter(|&e| !is_pci(e))
                    .map(move |e| (e, d))
            })
            .collect();
        extra.sort_unstable();
        put_be32(out, count(extra.len()));
        for (endpoint, domain) in extra {
            put_be32(out, domain);
            put_be32(out, endpoint);
        }
    }
}

/// Whether `endpoint` is a PCI requester id (segment 0), which C's layout
/// can carry.
const fn is_pci(endpoint: u32) -> bool {
    endpoint <= 0xffff
}

/// Read the subsection of non-PCI endpoints into `state` (loaded by
/// [`load_state`] from the same stream): each must name a domain of the
/// state and appear nowhere else; entries by ascending endpoint id.
pub fn load_extra_endpoints(
    r: &mut impl StreamReader,
    state: &mut SavedState,
) -> Result<(), MigrationError> {
    let mut seen: BTreeMap<u32, u32> = state
        .domains
        .iter()
        .flat_map(|d| d.endpoints.iter().map(move |&e| (e, d.id)))
        .collect();
    let n = read(r.read_be32(), Field::ExtraCount)?;
    for _ in 0..n {
        let domain = read(r.read_be32(), Field::ExtraEntry)?;
        let endpoint = read(r.read_be32(), Field::ExtraEntry)?;
        if is_pci(endpoint) {
            return Err(MigrationError::PciEndpointInExtra { endpoint, domain });
        }
        if let Some(&first_domain) = seen.get(&endpoint) {
            return Err(MigrationError::DuplicateEndpoint {
                endpoint,
                first_domain,
                domain,
            });
        }
        let Some(d) = state.domains.iter_mut().find(|d| d.id == domain) else {
            return Err(MigrationError::ExtraEndpointDomain { endpoint, domain });
        };
        d.endpoints.push(endpoint);
        seen.insert(endpoint, domain);
    }
    Ok(())
}

fn put_be32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_be_bytes());
}

/// A tree's node count. Domain ids and mappings are each at most 2^32 in
/// number in practice (a u32 id; mappings need memory), and C's count is
/// a 32-bit `guint` too.
fn count(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

// --- loading ----------------------------------------------------------------

/// Parse the device's vmstate from `r` into plain data, checking its
/// structure and consistency (every rule of [`SavedState::validate`]).
/// Nothing is allocated from a count read from the stream: vectors grow
/// only with the nodes actually read.
pub fn load_state(r: &mut impl StreamReader) -> Result<SavedState, MigrationError> {
    let mut checker = Checker::default();
    let mut domains = Vec::new();
    let declared = read(r.read_be32(), Field::DomainCount)?;
    let mut found: u64 = 0;
    while marker(r, Field::DomainMarker)? {
        found = found.saturating_add(1);
        if found > u64::from(declared) {
            return Err(MigrationError::NodeCount {
                tree: Tree::Domains,
                declared,
                found,
            });
        }
        let previous = domains.last().map(|d: &SavedDomain| d.id);
        let domain = load_domain(r, previous)?;
        checker.domain(&domain)?;
        domains.push(domain);
    }
    if found != u64::from(declared) {
        return Err(MigrationError::NodeCount {
            tree: Tree::Domains,
            declared,
            found,
        });
    }
    let bypass = match read(r.read_u8(), Field::ConfigBypass)? {
        0 => false,
        1 => true,
        value => return Err(MigrationError::BadConfigBypass { value }),
    };
    Ok(SavedState { domains, bypass })
}

fn load_domain(
    r: &mut impl StreamReader,
    previous: Option<u32>,
) -> Result<SavedDomain, MigrationError> {
    let key = read(r.read_be64(), Field::DomainKey { previous })?;
    let id = read(r.read_be32(), Field::DomainId { key })?;
    // C's key is the id as a pointer: a 64-bit value with the id in the
    // low half.
    if key != u64::from(id) {
        return Err(MigrationError::KeyMismatch { key, id });
    }

    let declared = read(r.read_be32(), Field::MappingCount { domain: id })?;
    let mut mappings = Vec::new();
    let mut found: u64 = 0;
    while marker(r, Field::MappingMarker { domain: id })? {
        found = found.saturating_add(1);
        if found > u64::from(declared) {
            return Err(MigrationError::NodeCount {
                tree: Tree::Mappings { domain: id },
                declared,
                found,
            });
        }
        let at = Field::Mapping { domain: id };
        let virt_start = read(r.read_be64(), at)?;
        let virt_end = read(r.read_be64(), at)?;
        let phys_start = read(r.read_be64(), at)?;
        let bits = read(r.read_be32(), at)?;
        let flags = MapFlags::from_bits(bits).ok_or(MigrationError::UnknownMapFlags {
            domain: id,
            interval: Interval {
                low: virt_start,
                high: virt_end,
            },
            flags: bits,
        })?;
        mappings.push(Mapping {
            virt_start,
            virt_end,
            phys_start,
            flags,
        });
    }
    if found != u64::from(declared) {
        return Err(MigrationError::NodeCount {
            tree: Tree::Mappings { domain: id },
            declared,
            found,
        });
    }

    let mut endpoints = Vec::new();
    while marker(r, Field::EndpointMarker { domain: id })? {
        endpoints.push(read(r.read_be32(), Field::Endpoint { domain: id })?);
    }

    let bypass = match read(r.read_u8(), Field::DomainBypass { domain: id })? {
        0 => false,
        1 => true,
        value => return Err(MigrationError::BadDomainBypass { domain: id, value }),
    };
    Ok(SavedDomain {
        id,
        bypass,
        endpoints,
        mappings,
    })
}

/// Name the field of a reader's bare truncation error.
fn read<T>(result: Result<T, MigrationError>, field: Field) -> Result<T, MigrationError> {
    result.map_err(|e| match e {
        MigrationError::Truncated { field: None } => {
            MigrationError::Truncated { field: Some(field) }
        }
        other => other,
    })
}

/// A gtree/qlist marker: `true` if a node follows.
fn marker(r: &mut impl StreamReader, field: Field) -> Result<bool, MigrationError> {
    match read(r.read_u8(), field)? {
        END => Ok(false),
        MORE => Ok(true),
        value => Err(MigrationError::BadMarker { field, value }),
    }
}

impl SavedState {
    /// The consistency rules [`load_state`] applies while reading, for a
    /// state built by other means: domains by strictly ascending id;
    /// mappings ordered, disjoint, not reversed, and none in a bypass
    /// domain; every endpoint listed once in the whole state.
    pub fn validate(&self) -> Result<(), MigrationError> {
        let mut checker = Checker::default();
        self.domains.iter().try_for_each(|d| checker.domain(d))
    }
}

/// The consistency rules, applied domain by domain in stream order.
#[derive(Default)]
struct Checker {
    previous: Option<u32>,
    /// Each endpoint seen so far, with its domain.
    endpoints: BTreeMap<u32, u32>,
}

impl Checker {
    fn domain(&mut self, d: &SavedDomain) -> Result<(), MigrationError> {
        match self.previous {
            Some(p) if p == d.id => return Err(MigrationError::DuplicateDomain { domain: d.id }),
            Some(p) if p > d.id => {
                return Err(MigrationError::DomainsOutOfOrder {
                    previous: p,
                    domain: d.id,
                })
            }
            _ => {}
        }
        self.previous = Some(d.id);

        let mut last: Option<Interval> = None;
        for m in &d.mappings {
            let interval = Interval::of(m);
            if interval.low > interval.high {
                return Err(MigrationError::ReversedInterval {
                    domain: d.id,
                    interval,
                });
            }
            // Strictly ascending and disjoint: each starts after the
            // previous one ends. Otherwise it overlaps the previous one if
            // it reaches it, else it came out of order.
            if let Some(prev) = last.filter(|p| interval.low <= p.high) {
                return Err(if interval.high >= prev.low {
                    MigrationError::OverlappingMappings {
                        domain: d.id,
                        first: prev,
                        second: interval,
                    }
                } else {
                    MigrationError::MappingsOutOfOrder {
                        domain: d.id,
                        previous: prev,
                        interval,
                    }
                });
            }
            last = Some(interval);
        }
        if let (true, Some(m)) = (d.bypass, d.mappings.first()) {
            return Err(MigrationError::MappingInBypassDomain {
                domain: d.id,
                interval: Interval::of(m),
            });
        }

        for &endpoint in &d.endpoints {
            if let Some(&first_domain) = self.endpoints.get(&endpoint) {
                return Err(MigrationError::DuplicateEndpoint {
                    endpoint,
                    first_domain,
                    domain: d.id,
                });
            }
            self.endpoints.insert(endpoint, d.id);
        }
        Ok(())
    }
}

// --- restoring --------------------------------------------------------------

impl Device {
    /// Make `state` the device's state: its domains, attachments and config
    /// `bypass`; registered endpoints it does not list become unattached.
    /// `known` says whether a device behind this IOMMU has an endpoint id
    /// (the glue's view). Everything is checked first: on error the device
    /// is unchanged. Domains without endpoints are dropped (module doc).
    ///
    /// Returns the events to pass on, in order: unmap events and address
    /// space switches for whatever was attached before (nothing, on a
    /// fresh destination), an address-space switch for every registered
    /// endpoint, then map events replaying every mapping of every attached
    /// endpoint (for notifier users such as vhost and VFIO).
    pub fn restore(
        &mut self,
        state: SavedState,
        known: impl Fn(u32) -> bool,
    ) -> Result<Vec<NotifierEvent>, MigrationError> {
        state.validate()?;
        let config = self.config();
        let mut domains = BTreeMap::new();
        for d in state.domains {
            if d.endpoints.is_empty() {
                continue;
            }
            if !(config.domain_start..=config.domain_end).contains(&d.id) {
                return Err(MigrationError::DomainOutOfRange {
                    domain: d.id,
                    start: config.domain_start,
                    end: config.domain_end,
                });
            }
            for &endpoint in &d.endpoints {
                self.check_endpoint(endpoint, d.id, &known)?;
            }
            let mut mappings = Mappings::new();
            for m in d.mappings {
                let interval = Interval::of(&m);
                if m.virt_start < config.input_start || m.virt_end > config.input_end {
                    return Err(MigrationError::MappingOutOfRange {
                        domain: d.id,
                        interval,
                        start: config.input_start,
                        end: config.input_end,
                    });
                }
                // validate() has ruled both out; kept as errors, not
                // panics.
                mappings.insert(m).map_err(|e| match e {
                    InsertError::Reversed => MigrationError::ReversedInterval {
                        domain: d.id,
                        interval,
                    },
                    InsertError::Overlap => MigrationError::OverlappingMappings {
                        domain: d.id,
                        first: interval,
                        second: interval,
                    },
                })?;
            }
            domains.insert(d.id, Domain::new(d.bypass, d.endpoints, mappings));
        }
        Ok(self.replace_domains(domains, state.bypass))
    }

    fn check_endpoint(
        &self,
        endpoint: u32,
        domain: u32,
        known: &impl Fn(u32) -> bool,
    ) -> Result<(), MigrationError> {
        if !known(endpoint) {
            Err(MigrationError::UnknownEndpoint { endpoint, domain })
        } else if self.is_unmanaged(endpoint) {
            Err(MigrationError::UnmanagedEndpoint { endpoint, domain })
        } else if !self.has_endpoint(endpoint) {
            Err(MigrationError::UnregisteredEndpoint { endpoint, domain })
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_reader_is_big_endian_and_stops_at_the_end() {
        let bytes = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14];
        let mut r: &[u8] = &bytes;
        assert_eq!(r.read_u8(), Ok(1));
        assert_eq!(r.read_be32(), Ok(0x0203_0405));
        assert_eq!(r.read_be64(), Ok(0x0607_0809_0a0b_0c0d));
        let truncated = MigrationError::Truncated { field: None };
        assert_eq!(r.read_be32(), Err(truncated.clone()));
        assert_eq!(r.read_be64(), Err(truncated.clone()));
        assert_eq!(r, [14], "a failed read consumes nothing");
        assert_eq!(r.read_u8(), Ok(14));
        assert_eq!(r.read_u8(), Err(truncated));
    }

    #[test]
    fn reader_errors_get_their_field() {
        let e = read::<u8>(
            Err(MigrationError::Truncated { field: None }),
            Field::Endpoint { domain: 4 },
        );
        assert_eq!(
            e.unwrap_err().to_string(),
            "the migration stream ends early, in an endpoint id of domain 4"
        );
        // Other errors pass unchanged.
        let other = MigrationError::BadConfigBypass { value: 2 };
        assert_eq!(
            read::<u8>(Err(other.clone()), Field::ConfigBypass),
            Err(other)
        );
    }
}
