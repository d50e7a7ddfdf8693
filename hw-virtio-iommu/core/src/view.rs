// SPDX-License-Identifier: GPL-2.0-or-later

//! Translation without the device's lock: a [`TranslationView`] is an
//! immutable snapshot of everything [`Device::translate`] reads (the
//! config's `bypass`, the reserved regions, the endpoint tables, and each
//! domain's kind and mappings), and decides every access exactly as the
//! device would have at the moment the view was taken.
//!
//! The intended use: the glue keeps the [`Device`] behind its lock for
//! requests, and after every change of what translation reads (a request
//! that changed something, `set_bypass`, an endpoint added or removed, a
//! reset, a migration restore), and before the answer of that request is
//! visible to the driver, publishes `Arc::new(device.view())` for DMA
//! threads to load with no lock. So an UNMAP the driver has seen answered
//! can no longer be used by a translation that starts afterwards, and a
//! MAP it has seen answered is always found. Faults a view decides are
//! returned, and the glue queues them with [`Device::queue_fault`].
//!
//! A view costs O(number of domains) reference counts: the mappings are
//! persistent trees ([`crate::mappings`]) shared with the device, which
//! copies only the path a later MAP or UNMAP changes; the endpoint tables
//! and reserved regions are `Arc`s the device copies on write.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

#[cfg(doc)]
use crate::device::Device;
use crate::mappings::Mappings;
use crate::properties::ReservedRegion;
use crate::translate::{self, Translated, TranslationState};
use crate::Perm;

/// What translation reads, frozen (see the module documentation).
/// `Clone` is O(1).
#[derive(Clone, Debug)]
pub struct TranslationView {
    bypass: bool,
    resv: Arc<[ReservedRegion]>,
    endpoints: Arc<BTreeMap<u32, Option<u32>>>,
    unmanaged: Arc<BTreeSet<u32>>,
    /// Ascending ids; a sorted slice is one allocation to build and a
    /// binary search to read.
    domains: Arc<[DomainView]>,
}

#[derive(Clone, Debug)]
struct DomainView {
    id: u32,
    bypass: bool,
    mappings: Mappings,
}

impl TranslationView {
    /// `domains` as (id, bypass, mappings), ids ascending (as the device's
    /// map yields them).
    pub(crate) fn new(
        bypass: bool,
        resv: Arc<[ReservedRegion]>,
        endpoints: Arc<BTreeMap<u32, Option<u32>>>,
        unmanaged: Arc<BTreeSet<u32>>,
        domains: impl Iterator<Item = (u32, bool, Mappings)>,
    ) -> Self {
        Self {
            bypass,
            resv,
            endpoints,
            unmanaged,
            domains: domains
                .map(|(id, domain_bypass, mappings)| DomainView {
                    id,
                    bypass: domain_bypass,
                    mappings,
                })
                .collect(),
        }
    }

    /// How an access of `endpoint` to `iova` goes: what
    /// [`Device::translate`] would answer in the state this view was taken
    /// from. A refusal is returned but queued nowhere: pass its fault to
    /// [`Device::queue_fault`].
    pub fn decide(&self, endpoint: u32, iova: u64, need: Perm) -> Translated {
        translate::decide(self, endpoint, iova, need)
    }
}

impl TranslationState for TranslationView {
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
        let i = self.domains.binary_search_by_key(&id, |d| d.id).ok()?;
        let d = self.domains.get(i)?;
        Some((d.bypass, &d.mappings))
    }
}
