// SPDX-License-Identifier: GPL-2.0-or-later

//! Checks of the device's properties, done once at realize so that a bad
//! command line is refused with a clear message before the guest runs.

use std::fmt;

/// Smallest and largest accepted `aw-bits` (the C device's bounds).
pub const AW_BITS_MIN: u8 = 32;
pub const AW_BITS_MAX: u8 = 64;

/// `VIRTIO_IOMMU_RESV_MEM_T_RESERVED`: accesses fault.
pub const RESV_MEM_T_RESERVED: u32 = 0;
/// `VIRTIO_IOMMU_RESV_MEM_T_MSI`: an MSI doorbell, mapped 1:1.
pub const RESV_MEM_T_MSI: u32 = 1;

/// The `granule` property, in the order of QEMU's `GranuleMode` enum
/// (`qdev_prop_granule_mode` parses the strings "4k", "8k", "16k", "64k",
/// "host").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granule {
    Size4K,
    Size8K,
    Size16K,
    Size64K,
    Host,
}

impl Granule {
    /// From the integer QEMU's enum property stores.
    pub const fn from_qapi(value: i32) -> Option<Self> {
        Some(match value {
            0 => Self::Size4K,
            1 => Self::Size8K,
            2 => Self::Size16K,
            3 => Self::Size64K,
            4 => Self::Host,
            _ => return None,
        })
    }

    /// The `page_size_mask` advertised for this granule: every power of two
    /// from the granule up. `host_page_size` is only used by `Host`.
    pub const fn page_size_mask(self, host_page_size: u64) -> u64 {
        let size = match self {
            Self::Size4K => 4 << 10,
            Self::Size8K => 8 << 10,
            Self::Size16K => 16 << 10,
            Self::Size64K => 64 << 10,
            Self::Host => host_page_size,
        };
        size.wrapping_neg()
    }
}

/// A region from the `reserved-regions` property, inclusive bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReservedRegion {
    pub start: u64,
    pub end: u64,
    pub kind: u32,
}

/// Why a property value was refused; the `Display` text is the error the
/// user sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PropertyError {
    AwBits(u8),
    Granule(i32),
    ReservedRegionType { index: usize, kind: u32 },
    ReservedRegionRange { index: usize, start: u64, end: u64 },
    ReservedRegionSyntax { index: usize, text: String },
    BypassDeviceSyntax { index: usize, text: String },
    BypassDeviceUnmatched { index: usize, text: String },
    NoncoherentSyntax { index: usize, text: String },
    NoncoherentPci { index: usize, text: String },
    NoncoherentUnmatched { index: usize, text: String },
    NoncoherentMachine { index: usize, text: String },
}

impl fmt::Display for PropertyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::AwBits(v) => write!(
                f,
                "aw-bits must be within [{AW_BITS_MIN},{AW_BITS_MAX}] (got {v})"
            ),
            Self::Granule(v) => write!(f, "Unsupported granule mode {v}"),
            Self::ReservedRegionType { index, kind } => write!(
                f,
                "reserved region {index} has an invalid type {kind} \
                 (valid values are {RESV_MEM_T_RESERVED} and {RESV_MEM_T_MSI})"
            ),
            Self::ReservedRegionRange { index, start, end } => write!(
                f,
                "reserved region {index} ends (0x{end:x}) before it starts (0x{start:x})"
            ),
            Self::ReservedRegionSyntax { index, ref text } => write!(
                f,
                "reserved region {index} '{text}' is not START:END:TYPE \
                 (START and END hexadecimal, TYPE decimal)"
            ),
            Self::BypassDeviceSyntax { index, ref text } => write!(
                f,
                "bypass-devices element {index} '{text}' is neither a device id \
                 (a letter, then letters, digits, '-', '.' or '_') nor a PCI address \
                 BUS:DEV.FN (hexadecimal, DEV up to 1f, FN up to 7, e.g. 00:05.0)"
            ),
            Self::BypassDeviceUnmatched { index, ref text } => write!(
                f,
                "bypass-devices element {index} '{text}' names no device behind \
                 this IOMMU when the machine starts (a PCI address names a device \
                 on a root bus; name a device behind a bridge, or a virtio-mmio \
                 device, by its id)"
            ),
            Self::NoncoherentSyntax { index, ref text } => write!(
                f,
                "noncoherent-devices element {index} '{text}' is not a device id \
                 (a letter, then letters, digits, '-', '.' or '_')"
            ),
            Self::NoncoherentPci { index, ref text } => write!(
                f,
                "noncoherent-devices element {index} '{text}' is a PCI address: a PCI \
                 device's DMA coherency is its host bridge's, which QEMU describes as \
                 coherent; name virtio-mmio devices by their id"
            ),
            Self::NoncoherentUnmatched { index, ref text } => write!(
                f,
                "noncoherent-devices element {index} '{text}' names no device plugged \
                 into a virtio-mmio transport (a PCI device's DMA coherency is its host \
                 bridge's, which QEMU describes as coherent)"
            ),
            Self::NoncoherentMachine { index, ref text } => write!(
                f,
                "noncoherent-devices element {index} '{text}': this machine describes \
                 every device's DMA as coherent (only arm virt's virtio-mmio devices can \
                 be described otherwise)"
            ),
        }
    }
}

impl std::error::Error for PropertyError {}

/// Check `aw-bits` and return the last valid input address.
pub fn input_range_end(aw_bits: u8) -> Result<u64, PropertyError> {
    if !(AW_BITS_MIN..=AW_BITS_MAX).contains(&aw_bits) {
        return Err(PropertyError::AwBits(aw_bits));
    }
    Ok(u64::MAX >> 64u32.saturating_sub(aw_bits.into()))
}

/// Parse the `reserved-regions` entries, each "START:END:TYPE" as for QEMU's
/// C device (START and END hexadecimal with an optional 0x, both inclusive;
/// TYPE decimal), and check them.
pub fn parse_reserved_regions<S: AsRef<str>>(
    entries: &[S],
) -> Result<Vec<ReservedRegion>, PropertyError> {
    let regions = entries
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let text = text.as_ref();
            parse_reserved_region(text).ok_or_else(|| PropertyError::ReservedRegionSyntax {
                index,
                text: text.to_owned(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    check_reserved_regions(&regions)?;
    Ok(regions)
}

fn parse_reserved_region(text: &str) -> Option<ReservedRegion> {
    fn hex(s: &str) -> Option<u64> {
        let digits = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .unwrap_or(s);
        // from_str_radix would accept a sign; the C parser's users never write one.
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(digits, 16).ok()
    }
    let mut fields = text.split(':');
    let start = hex(fields.next()?)?;
    let end = hex(fields.next()?)?;
    let kind = fields.next()?;
    if fields.next().is_some() || kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(ReservedRegion {
        start,
        end,
        kind: kind.parse().ok()?,
    })
}

/// Check parsed `reserved-regions` entries: a known type, start <= end.
pub fn check_reserved_regions(regions: &[ReservedRegion]) -> Result<(), PropertyError> {
    for (index, r) in regions.iter().enumerate() {
        if r.kind != RESV_MEM_T_RESERVED && r.kind != RESV_MEM_T_MSI {
            return Err(PropertyError::ReservedRegionType {
                index,
                kind: r.kind,
            });
        }
        if r.end < r.start {
            return Err(PropertyError::ReservedRegionRange {
                index,
                start: r.start,
                end: r.end,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aw_bits_bounds() {
        assert_eq!(input_range_end(31), Err(PropertyError::AwBits(31)));
        assert_eq!(input_range_end(65), Err(PropertyError::AwBits(65)));
        assert_eq!(input_range_end(0), Err(PropertyError::AwBits(0)));
        assert_eq!(input_range_end(32), Ok(0xffff_ffff));
        assert_eq!(input_range_end(39), Ok((1 << 39) - 1));
        assert_eq!(input_range_end(48), Ok((1 << 48) - 1));
        assert_eq!(input_range_end(63), Ok(u64::MAX >> 1));
        assert_eq!(input_range_end(64), Ok(u64::MAX));
    }

    #[test]
    fn aw_bits_message_names_the_bounds() {
        let msg = input_range_end(20).unwrap_err().to_string();
        assert!(msg.starts_with("aw-bits must be within [32,64]"), "{msg}");
    }

    #[test]
    fn granule_masks() {
        assert_eq!(Granule::Size4K.page_size_mask(0), !0xfff);
        assert_eq!(Granule::Size8K.page_size_mask(0), !0x1fff);
        assert_eq!(Granule::Size16K.page_size_mask(0), !0x3fff);
        assert_eq!(Granule::Size64K.page_size_mask(0), !0xffff);
        assert_eq!(Granule::Host.page_size_mask(4096), !0xfff);
        assert_eq!(Granule::Host.page_size_mask(16384), !0x3fff);
    }

    #[test]
    fn granule_from_qapi() {
        assert_eq!(Granule::from_qapi(0), Some(Granule::Size4K));
        assert_eq!(Granule::from_qapi(4), Some(Granule::Host));
        assert_eq!(Granule::from_qapi(5), None);
        assert_eq!(Granule::from_qapi(-1), None);
    }

    #[test]
    fn reserved_region_syntax() {
        let parsed = parse_reserved_regions(&["0xfee00000:0xfeefffff:1", "1000:1fff:0"]).unwrap();
        assert_eq!(
            parsed,
            [
                ReservedRegion {
                    start: 0xfee0_0000,
                    end: 0xfeef_ffff,
                    kind: RESV_MEM_T_MSI
                },
                ReservedRegion {
                    start: 0x1000,
                    end: 0x1fff,
                    kind: RESV_MEM_T_RESERVED
                },
            ]
        );
        assert_eq!(parse_reserved_regions::<&str>(&[]), Ok(vec![]));
        let top = parse_reserved_regions(&["0xffffffffffffffff:0xFFFFFFFFFFFFFFFF:0"]).unwrap();
        assert_eq!(top[0].end, u64::MAX);

        for bad in [
            "",
            "0x1000",
            "0x1000:0x2000",
            "0x1000:0x2000:",
            "0x1000;0x2000;1",
            "0x:0x10:0",
            "g:10:0",
            "0x1000:0x2000:1:0",
            "-1:10:0",
            "0x1000:0x2000:-1",
            "0x1000:0x2000:0x1",
            " 0x1000:0x2000:1",
            "0x10000000000000000:0:0",
            "0x1000:0x2000:4294967296",
        ] {
            let err = parse_reserved_regions(&["0:0:0", bad]).unwrap_err();
            assert_eq!(
                err,
                PropertyError::ReservedRegionSyntax {
                    index: 1,
                    text: bad.to_owned()
                },
                "{bad:?}"
            );
        }
        // A reversed region is an error, not a crash (the C parser asserts).
        assert!(matches!(
            parse_reserved_regions(&["0x2000:0x1000:0"]),
            Err(PropertyError::ReservedRegionRange { index: 0, .. })
        ));
    }

    #[test]
    fn reserved_regions() {
        let ok = [
            ReservedRegion {
                start: 0xfee0_0000,
                end: 0xfeef_ffff,
                kind: RESV_MEM_T_MSI,
            },
            ReservedRegion {
                start: 0,
                end: 0,
                kind: RESV_MEM_T_RESERVED,
            },
        ];
        assert_eq!(check_reserved_regions(&ok), Ok(()));
        assert_eq!(check_reserved_regions(&[]), Ok(()));

        let bad_type = [ok[0], ReservedRegion { kind: 2, ..ok[1] }];
        assert_eq!(
            check_reserved_regions(&bad_type),
            Err(PropertyError::ReservedRegionType { index: 1, kind: 2 })
        );
        assert!(check_reserved_regions(&bad_type)
            .unwrap_err()
            .to_string()
            .contains("reserved region 1 has an invalid type"));

        let reversed = [ReservedRegion {
            start: 0x2000,
            end: 0x1fff,
            kind: 0,
        }];
        assert_eq!(
            check_reserved_regions(&reversed),
            Err(PropertyError::ReservedRegionRange {
                index: 0,
                start: 0x2000,
                end: 0x1fff
            })
        );
    }
}
