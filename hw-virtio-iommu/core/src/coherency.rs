// SPDX-License-Identifier: GPL-2.0-or-later

//! The `noncoherent-devices` property: the devices whose DMA the machine's
//! firmware tables describe as not cache-coherent (device tree
//! `dma-noncoherent`, ACPI `_CCA = 0`) instead of QEMU's usual coherent.
//!
//! A guest honours the description per device only where the device has a
//! node of its own: a virtio-mmio device does, a PCI device takes its
//! host bridge's. So an element is the qdev `id=` of a device plugged into
//! a virtio-mmio transport; a PCI address is refused here, and an id that
//! names no such device is refused once the machine is built
//! ([`NoncoherentDevices::unmatched`]).

use crate::{
    bypass::{parse_bypass_devices, BypassDevice},
    properties::PropertyError,
};

/// The parsed property, and which elements the machine has described.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NoncoherentDevices {
    ids: Vec<String>,
    described: Vec<bool>,
}

impl NoncoherentDevices {
    /// Parse the elements: each a well-formed qdev id.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, PropertyError> {
        let ids = parse_bypass_devices(entries)
            .map_err(|e| match e {
                PropertyError::BypassDeviceSyntax { index, text } => {
                    PropertyError::NoncoherentSyntax { index, text }
                }
                other => other,
            })?
            .into_iter()
            .enumerate()
            .map(|(index, element)| match element {
                BypassDevice::Id(id) => Ok(id),
                BypassDevice::Address { .. } => Err(PropertyError::NoncoherentPci {
                    index,
                    text: entries
                        .get(index)
                        .map(|t| t.as_ref().to_owned())
                        .unwrap_or_default(),
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let described = vec![false; ids.len()];
        Ok(Self { ids, described })
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether an element names the device with qdev id `id`.
    pub fn names(&self, id: Option<&str>) -> bool {
        self.ids.iter().any(|e| Some(e.as_str()) == id)
    }

    /// Whether the virtio-mmio device with qdev id `id` is to be described
    /// non-coherent; remembers that the machine described it.
    pub fn describe(&mut self, id: Option<&str>) -> bool {
        let mut named = false;
        for (element, described) in self.ids.iter().zip(self.described.iter_mut()) {
            if Some(element.as_str()) == id {
                *described = true;
                named = true;
            }
        }
        named
    }

    /// Once the machine is built: the first element no virtio-mmio device
    /// answered to. `machine_describes` says whether the machine offered
    /// any virtio-mmio transport at all (arm virt does, q35 does not).
    pub fn unmatched(&self, machine_describes: bool) -> Result<(), PropertyError> {
        match self
            .ids
            .iter()
            .zip(&self.described)
            .enumerate()
            .find(|(_, (_, &described))| !described)
        {
            None => Ok(()),
            Some((index, (id, _))) if machine_describes => {
                Err(PropertyError::NoncoherentUnmatched {
                    index,
                    text: id.clone(),
                })
            }
            Some((index, (id, _))) => Err(PropertyError::NoncoherentMachine {
                index,
                text: id.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_only() {
        let n = NoncoherentDevices::parse(&["disk0", "net-1"]).unwrap();
        assert!(!n.is_empty());
        assert!(NoncoherentDevices::parse::<&str>(&[]).unwrap().is_empty());
        assert_eq!(
            NoncoherentDevices::parse(&["disk0", "00:03.0"]),
            Err(PropertyError::NoncoherentPci {
                index: 1,
                text: "00:03.0".into()
            })
        );
        assert_eq!(
            NoncoherentDevices::parse(&["0disk"]),
            Err(PropertyError::NoncoherentSyntax {
                index: 0,
                text: "0disk".into()
            })
        );
    }

    #[test]
    fn every_element_must_be_described() {
        let mut n = NoncoherentDevices::parse(&["disk0", "net0"]).unwrap();
        assert!(!n.describe(None));
        assert!(!n.describe(Some("other")));
        assert!(n.describe(Some("disk0")));
        assert_eq!(
            n.unmatched(true),
            Err(PropertyError::NoncoherentUnmatched {
                index: 1,
                text: "net0".into()
            })
        );
        assert_eq!(
            n.unmatched(false),
            Err(PropertyError::NoncoherentMachine {
                index: 1,
                text: "net0".into()
            })
        );
        assert!(n.describe(Some("net0")));
        assert_eq!(n.unmatched(true), Ok(()));
        assert_eq!(NoncoherentDevices::default().unmatched(false), Ok(()));
    }
}
