// SPDX-License-Identifier: GPL-2.0-or-later

//! Translating one DMA access of an endpoint, as the C device's
//! `virtio_iommu_translate` decides it, in the same order: unattached
//! endpoints follow the config's `bypass`; then reserved regions (MSI
//! passes 1:1, RESERVED faults); then bypass domains; then the mappings and
//! their permissions. A refusal is a fault report.
//!
//! The decision is made by one function, `decide`, over what it reads
//! (`TranslationState`): either the [`Device`] itself
//! ([`Device::translate`], under the glue's lock) or a
//! [`TranslationView`] snapshot of it ([`TranslationView::decide`], with
//! no lock), so both answer alike by construction.
//!
//! DIFFERENCE: the C device looks up the interval `[addr, addr + 1]`, so an
//! unmapped address right before a mapping is translated with that mapping
//! (to `phys_start - 1`), and at `u64::MAX` the interval wraps to
//! `[u64::MAX, 0]`, which only a mapping starting at 0 matches; here only
//! the mapping holding the address counts.

use std::collections::{BTreeMap, BTreeSet};

use crate::device::Device;
use crate::fault::{Fault, FaultReason, FAULT_F_ADDRESS, FAULT_F_READ, FAULT_F_WRITE};
use crate::mappings::{Mapping, Mappings};
use crate::properties::{ReservedRegion, RESV_MEM_T_MSI};
#[cfg(doc)]
use crate::view::TranslationView;
use crate::Perm;

/// How an access goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Translated {
    /// To the same address, with the rights asked for (bypass mode, an MSI
    /// doorbell region).
    Identity,
    /// Through this mapping: to `mapping.phys(iova)`, with the rights asked
    /// for. The whole mapping translates linearly, so the glue may build a
    /// TLB entry as large as the mapping allows.
    Mapped(Mapping),
    /// Refused (no rights). [`Device::translate`] has queued the report
    /// in [`Device::faults`]; [`TranslationView::decide`] leaves that to
    /// its caller ([`Device::queue_fault`]).
    Fault(Fault),
}

impl Device {
    /// Translate an access of `endpoint` to `iova` that needs rights
    /// `need`.
    pub fn translate(&mut self, endpoint: u32, iova: u64, need: Perm) -> Translated {
        let result = decide(self, endpoint, iova, need);
        if let Translated::Fault(fault) = result {
            self.queue_fault(fault);
        }
        result
    }
}

/// What a translation reads, from the device or from a snapshot of it.
pub(crate) trait TranslationState {
    /// The config space's `bypass`: what unattached endpoints do.
    fn config_bypass(&self) -> bool;
    /// The reserved regions, sorted and disjoint.
    fn reserved(&self) -> &[ReservedRegion];
    /// Registered endpoints and the domain each is attached to.
    fn endpoints(&self) -> &BTreeMap<u32, Option<u32>>;
    /// Endpoints `bypass-devices` names.
    fn unmanaged(&self) -> &BTreeSet<u32>;
    /// Whether domain `id` is a bypass domain, and its mappings.
    fn domain(&self, id: u32) -> Option<(bool, &Mappings)>;

    /// Unmanaged: named by `bypass-devices`, and no managed endpoint has
    /// the same id (the managed one wins).
    fn unmanaged_endpoint(&self, endpoint: u32) -> bool {
        self.unmanaged().contains(&endpoint) && !self.endpoints().contains_key(&endpoint)
    }

    /// The state of an endpoint's attachment: its domain's kind and
    /// mappings.
    fn attachment(&self, endpoint: u32) -> Option<(bool, &Mappings)> {
        self.domain(self.endpoints().get(&endpoint).copied().flatten()?)
    }
}

/// How an access of `endpoint` to `iova` goes, reading `state`; a fault is
/// returned, not queued.
pub(crate) fn decide(
    state: &impl TranslationState,
    endpoint: u32,
    iova: u64,
    need: Perm,
) -> Translated {
    let fault = |reason, flags| {
        Translated::Fault(Fault {
            reason,
            flags: flags | FAULT_F_ADDRESS,
            endpoint,
            address: iova,
        })
    };
    // Not reached through QEMU (an unmanaged endpoint's address space
    // never enables the IOMMU region), but the core holds the rule.
    if state.unmanaged_endpoint(endpoint) {
        return Translated::Identity;
    }
    let Some((domain_bypass, mappings)) = state.attachment(endpoint) else {
        // C: an endpoint it has no record of (never attached, or
        // detached) is "not known": reason UNKNOWN, not DOMAIN.
        return if state.config_bypass() {
            Translated::Identity
        } else {
            fault(FaultReason::Unknown, 0)
        };
    };
    if let Some(region) = region_holding(state.reserved(), iova) {
        return if region.kind == RESV_MEM_T_MSI {
            Translated::Identity
        } else {
            fault(FaultReason::Mapping, 0)
        };
    }
    if domain_bypass {
        return Translated::Identity;
    }
    let Some(m) = mappings.lookup(iova) else {
        return fault(FaultReason::Mapping, 0);
    };
    let mut denied = 0;
    if need.read && !m.flags.read() {
        denied |= FAULT_F_READ;
    }
    if need.write && !m.flags.write() {
        denied |= FAULT_F_WRITE;
    }
    if denied != 0 {
        return fault(FaultReason::Mapping, denied);
    }
    Translated::Mapped(m)
}

/// The region of a sorted, disjoint list holding `addr`.
fn region_holding(regions: &[ReservedRegion], addr: u64) -> Option<&ReservedRegion> {
    let after = regions.partition_point(|r| r.start <= addr);
    let candidate = regions.get(after.checked_sub(1)?)?;
    (addr <= candidate.end).then_some(candidate)
}
