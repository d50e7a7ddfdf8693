// SPDX-License-Identifier: GPL-2.0-or-later

//! Translating one DMA access of an endpoint, as the C device's
//! `virtio_iommu_translate` decides it, in the same order: unattached
//! endpoints follow the config's `bypass`; then reserved regions (MSI
//! passes 1:1, RESERVED faults); then bypass domains; then the mappings and
//! their permissions. Refusals queue a fault report.
//!
//! DIFFERENCE: the C device looks up the interval `[addr, addr + 1]`, so an
//! unmapped address right before a mapping is translated with that mapping
//! (to `phys_start - 1`), and at `u64::MAX` the interval wraps to
//! `[u64::MAX, 0]`, which only a mapping starting at 0 matches; here only
//! the mapping holding the address counts.

use crate::device::Device;
use crate::fault::{Fault, FaultReason, FAULT_F_ADDRESS, FAULT_F_READ, FAULT_F_WRITE};
use crate::mappings::Mapping;
use crate::properties::{ReservedRegion, RESV_MEM_T_MSI};

/// The rights a DMA access needs (QEMU's `IOMMUAccessFlags`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Access {
    pub read: bool,
    pub write: bool,
}

impl Access {
    pub const READ: Self = Self {
        read: true,
        write: false,
    };
    pub const WRITE: Self = Self {
        read: false,
        write: true,
    };
    pub const READ_WRITE: Self = Self {
        read: true,
        write: true,
    };
}

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
    /// Refused (no rights); the report was queued in [`Device::faults`].
    Fault(Fault),
}

impl Device {
    /// Translate an access of `endpoint` to `iova`.
    pub fn translate(&mut self, endpoint: u32, iova: u64, access: Access) -> Translated {
        let result = self.decide(endpoint, iova, access);
        if let Translated::Fault(fault) = result {
            self.push_fault(fault);
        }
        result
    }

    fn decide(&self, endpoint: u32, iova: u64, access: Access) -> Translated {
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
        if self.is_unmanaged(endpoint) {
            return Translated::Identity;
        }
        let Some((domain_bypass, mappings)) = self.attachment(endpoint) else {
            // C: an endpoint it has no record of (never attached, or
            // detached) is "not known": reason UNKNOWN, not DOMAIN.
            return if self.bypass() {
                Translated::Identity
            } else {
                fault(FaultReason::Unknown, 0)
            };
        };
        if let Some(region) = region_holding(self.reserved_regions(), iova) {
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
        if access.read && !m.flags.read() {
            denied |= FAULT_F_READ;
        }
        if access.write && !m.flags.write() {
            denied |= FAULT_F_WRITE;
        }
        if denied != 0 {
            return fault(FaultReason::Mapping, denied);
        }
        Translated::Mapped(m)
    }
}

/// The region of a sorted, disjoint list holding `addr`.
fn region_holding(regions: &[ReservedRegion], addr: u64) -> Option<&ReservedRegion> {
    let after = regions.partition_point(|r| r.start <= addr);
    let candidate = regions.get(after.checked_sub(1)?)?;
    (addr <= candidate.end).then_some(candidate)
}
