// SPDX-License-Identifier: GPL-2.0-or-later

//! What `qom-get` shows of the device (docs/device.md, "Introspection"):
//! `endpoints`, every device behind the IOMMU with its attachment and how
//! its DMA is described; `domains`, each domain with its endpoints and
//! mappings; `counters`, what the device has done.

use qom_props::json_string;
use virtio_iommu_core::{counters::Counters, Mappings};

use super::VirtioIommu;

/// The mappings `domains` lists per domain; the count is always exact.
const MAPPINGS_SHOWN: usize = 64;

impl VirtioIommu {
    /// The `endpoints` property, as JSON: a list of
    /// `{"id", "bus", "address", "device", "domain", "bypass-devices",
    /// "address-space", "dma"}`.
    pub(crate) fn endpoints_json(&self) -> String {
        let noncoherent = self.noncoherent.borrow();
        let items: Vec<String> = self
            .endpoints
            .borrow()
            .iter()
            .map(|ep| {
                let place = ep.placement();
                let (domain, bypassed) = self
                    .with_core(|core| {
                        (
                            core.endpoint_domain(ep.id()),
                            core.endpoint_bypassed(ep.id()),
                        )
                    })
                    .unwrap_or((None, true));
                // Only a virtio-mmio device can be described non-coherent.
                let coherent = place.bus == "pci" || !noncoherent.names(place.qdev_id.as_deref());
                format!(
                    "{{\"id\": {}, \"bus\": \"{}\", \"address\": \"{}\", \"device\": {}, \
                     \"domain\": {}, \"bypass-devices\": {}, \"address-space\": \"{}\", \
                     \"dma\": \"{}\"}}",
                    ep.id(),
                    place.bus,
                    place.address,
                    place
                        .qdev_id
                        .as_deref()
                        .map_or_else(|| "null".to_owned(), json_string),
                    domain.map_or_else(|| "null".to_owned(), |d| d.to_string()),
                    ep.unmanaged(),
                    if ep.unmanaged() || bypassed {
                        "bypass"
                    } else {
                        "iommu"
                    },
                    if coherent { "coherent" } else { "non-coherent" },
                )
            })
            .collect();
        format!("[{}]", items.join(", "))
    }

    /// The `domains` property, as JSON: a list of `{"id", "bypass",
    /// "endpoints", "mapping-count", "mappings"}`, each mapping
    /// `{"iova", "end", "phys", "flags"}` (up to [`MAPPINGS_SHOWN`]).
    pub(crate) fn domains_json(&self) -> String {
        self.with_core(|core| {
            let items: Vec<String> = core
                .domain_ids()
                .map(|id| {
                    let endpoints: Vec<String> = core
                        .domain_endpoints(id)
                        .iter()
                        .map(u32::to_string)
                        .collect();
                    let mappings = core.mappings(id);
                    let shown: Vec<String> = mappings
                        .into_iter()
                        .flat_map(Mappings::iter)
                        .take(MAPPINGS_SHOWN)
                        .map(|m| {
                            let flags = [
                                (m.flags.read(), "r"),
                                (m.flags.write(), "w"),
                                (m.flags.mmio(), "mmio"),
                            ]
                            .iter()
                            .filter(|(on, _)| *on)
                            .map(|(_, name)| json_string(name))
                            .collect::<Vec<_>>()
                            .join(", ");
                            format!(
                                "{{\"iova\": {}, \"end\": {}, \"phys\": {}, \"flags\": [{flags}]}}",
                                m.virt_start, m.virt_end, m.phys_start
                            )
                        })
                        .collect();
                    format!(
                        "{{\"id\": {id}, \"bypass\": {}, \"endpoints\": [{}], \
                         \"mapping-count\": {}, \"mappings\": [{}]}}",
                        core.domain_bypass(id).unwrap_or(false),
                        endpoints.join(", "),
                        mappings.map_or(0, Mappings::len),
                        shown.join(", ")
                    )
                })
                .collect();
            format!("[{}]", items.join(", "))
        })
        .unwrap_or_else(|| "[]".to_owned())
    }

    /// The `counters` property, as JSON: `{"requests": {TYPE: {STATUS:
    /// n}}, "malformed-chains", "faults-raised", "faults-dropped",
    /// "notifier-calls", "address-space-switches", "translation-snapshots",
    /// "requests-copied"}`.
    pub(crate) fn counters_json(&self) -> String {
        let (counters, dropped) = self
            .with_core(|core| (core.counters().clone(), core.faults().dropped()))
            .unwrap_or_else(|| (Counters::default(), 0));
        let mut by_type: Vec<(&str, Vec<String>)> = Vec::new();
        for (kind, status, n) in counters.requests() {
            let entry = format!("{}: {n}", json_string(status));
            match by_type.last_mut() {
                Some((k, v)) if *k == kind => v.push(entry),
                _ => by_type.push((kind, vec![entry])),
            }
        }
        let requests: Vec<String> = by_type
            .iter()
            .map(|(kind, v)| format!("{}: {{{}}}", json_string(kind), v.join(", ")))
            .collect();
        format!(
            "{{\"requests\": {{{}}}, \"malformed-chains\": {}, \"faults-raised\": {}, \
             \"faults-dropped\": {dropped}, \"notifier-calls\": {}, \
             \"address-space-switches\": {}, \"translation-snapshots\": {}, \
             \"requests-copied\": {}}}",
            requests.join(", "),
            counters.malformed_chains(),
            counters.faults_raised(),
            self.notifier_calls.get(),
            self.space_switches.get(),
            self.snapshots.get(),
            self.copied_requests.get(),
        )
    }
}
