// SPDX-License-Identifier: GPL-2.0-or-later

//! The `bypass-devices` property: PCI devices whose DMA never goes through
//! the IOMMU (trusted or legacy devices that must not pay for
//! translation). Each element names a device by its qdev `id=` or by its
//! PCI address `BUS:DEV.FN`.
//!
//! Endpoints are created when QEMU gives a PCI device its DMA address
//! space, for cold-plugged devices when the machine is done, before the
//! firmware numbers the buses behind bridges (they all read as bus 0 then).
//! So an address only names a device on a root bus, whose number is fixed
//! (q35's `pcie.0` is bus 0, a `pxb` bus has its `bus_nr`); a device behind
//! a bridge or root port is named by its id. The decision is taken once per
//! endpoint, when it is created.

use crate::properties::PropertyError;

/// One element of `bypass-devices`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BypassDevice {
    /// A qdev id (`-device ...,id=NAME`).
    Id(String),
    /// A device on the root bus numbered `bus`, at `devfn`.
    Address { bus: u8, devfn: u8 },
}

/// What the glue knows of a PCI device when its endpoint is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciDeviceRef<'a> {
    /// Its qdev id, if it has one (and is known by then: a hot-plugged
    /// device is not on its bus yet when its endpoint is created).
    pub id: Option<&'a str>,
    /// The number of its bus if that is a root bus; `None` behind a bridge.
    pub root_bus: Option<u8>,
    pub devfn: u8,
}

impl BypassDevice {
    /// Whether this element names `dev`.
    pub fn matches(&self, dev: &PciDeviceRef<'_>) -> bool {
        match self {
            Self::Id(id) => dev.id == Some(id.as_str()),
            Self::Address { bus, devfn } => dev.root_bus == Some(*bus) && dev.devfn == *devfn,
        }
    }
}

impl std::fmt::Display for BypassDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Id(id) => f.write_str(id),
            Self::Address { bus, devfn } => {
                write!(f, "{bus:02x}:{:02x}.{:x}", devfn >> 3, devfn & 7)
            }
        }
    }
}

/// Parse the `bypass-devices` elements. An element with a `:` is a PCI
/// address (qdev ids cannot hold one), anything else must be a well-formed
/// qdev id (a letter, then letters, digits, `-`, `.`, `_`).
pub fn parse_bypass_devices<S: AsRef<str>>(
    entries: &[S],
) -> Result<Vec<BypassDevice>, PropertyError> {
    entries
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let text = text.as_ref();
            parse_element(text).ok_or_else(|| PropertyError::BypassDeviceSyntax {
                index,
                text: text.to_owned(),
            })
        })
        .collect()
}

fn parse_element(text: &str) -> Option<BypassDevice> {
    if text.contains(':') {
        return parse_address(text);
    }
    let mut chars = text.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    (first_ok && rest_ok).then(|| BypassDevice::Id(text.to_owned()))
}

/// `BUS:DEV.FN`: bus and device one or two hex digits, function one.
fn parse_address(text: &str) -> Option<BypassDevice> {
    fn hex(s: &str, max_digits: usize, max: u8) -> Option<u8> {
        if s.is_empty() || s.len() > max_digits || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u8::from_str_radix(s, 16).ok().filter(|&v| v <= max)
    }
    let (bus, slot) = text.split_once(':')?;
    let (dev, func) = slot.split_once('.')?;
    let bus = hex(bus, 2, 0xff)?;
    let dev = hex(dev, 2, 0x1f)?;
    let func = hex(func, 1, 7)?;
    Some(BypassDevice::Address {
        bus,
        devfn: dev << 3 | func,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(id: Option<&str>, root_bus: Option<u8>, devfn: u8) -> PciDeviceRef<'_> {
        PciDeviceRef {
            id,
            root_bus,
            devfn,
        }
    }

    #[test]
    fn syntax() {
        assert_eq!(
            parse_bypass_devices(&["00:05.0", "disk0", "1f:1f.7", "a", "b.c-d_1", "0:3.1"]),
            Ok(vec![
                BypassDevice::Address {
                    bus: 0,
                    devfn: 0x28
                },
                BypassDevice::Id("disk0".into()),
                BypassDevice::Address {
                    bus: 0x1f,
                    devfn: 0xff
                },
                BypassDevice::Id("a".into()),
                BypassDevice::Id("b.c-d_1".into()),
                BypassDevice::Address {
                    bus: 0,
                    devfn: 0x19
                },
            ])
        );
        assert_eq!(parse_bypass_devices::<&str>(&[]), Ok(vec![]));
        for bad in [
            "",
            "0disk",
            "-x",
            "dev ice",
            "disk/0",
            "00:20.0",
            "00:05.8",
            "100:05.0",
            "00:05",
            "00.05.0",
            "00:05.0.1",
            ":05.0",
            "00:.0",
            "00:05.",
            "00:05.00",
            "0x0:05.0",
            "00:+5.0",
            "00:05:0",
            "dïsk",
            "0000:00:05.0",
        ] {
            assert_eq!(
                parse_bypass_devices(&["ok", bad]),
                Err(PropertyError::BypassDeviceSyntax {
                    index: 1,
                    text: bad.to_owned()
                }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn syntax_message_names_the_property_and_the_element() {
        let msg = parse_bypass_devices(&["00:20.0"]).unwrap_err().to_string();
        assert!(
            msg.starts_with("bypass-devices element 0 '00:20.0' is neither"),
            "{msg}"
        );
        assert!(msg.contains("BUS:DEV.FN"), "{msg}");
    }

    #[test]
    fn matching() {
        let by_id = BypassDevice::Id("disk0".into());
        assert!(by_id.matches(&dev(Some("disk0"), Some(0), 0x28)));
        // Ids match wherever the device is, behind a bridge too.
        assert!(by_id.matches(&dev(Some("disk0"), None, 0)));
        assert!(!by_id.matches(&dev(Some("disk1"), Some(0), 0x28)));
        assert!(!by_id.matches(&dev(None, Some(0), 0x28)));

        let by_addr = BypassDevice::Address {
            bus: 0,
            devfn: 0x28,
        };
        assert!(by_addr.matches(&dev(None, Some(0), 0x28)));
        assert!(by_addr.matches(&dev(Some("other"), Some(0), 0x28)));
        assert!(!by_addr.matches(&dev(None, Some(0), 0x29)));
        assert!(!by_addr.matches(&dev(None, Some(1), 0x28)));
        // Behind a bridge the bus is not numbered yet when the endpoint is
        // created: an address never names such a device, even if its bus
        // reads as 0 then.
        assert!(!by_addr.matches(&dev(None, None, 0x28)));
    }

    #[test]
    fn display_round_trips() {
        for text in ["00:05.0", "1f:1f.7", "disk0"] {
            let parsed = parse_bypass_devices(&[text]).unwrap();
            assert_eq!(parsed[0].to_string(), text);
        }
    }
}
