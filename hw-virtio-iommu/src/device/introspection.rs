// SPDX-License-Identifier: GPL-2.0-or-later

//! What `qom-get` shows of the device: its `endpoints` property, every
//! device behind the IOMMU with its attachment and how its DMA is
//! described (docs/virtio-mmio.md).

use qom_json::json_string;

use super::VirtioIommu;

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
}
