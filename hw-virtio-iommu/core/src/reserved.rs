// SPDX-License-Identifier: GPL-2.0-or-later

//! Reserved regions as endpoints see them: the list PROBE reports as
//! `VIRTIO_IOMMU_PROBE_T_RESV_MEM` properties (spec 5.13.6.8.1) and
//! translation consults.
//!
//! The `reserved-regions` property may list overlapping regions. The C
//! device inserts them one by one into a sorted list where each new region
//! wins over the parts of earlier ones it covers (QEMU's
//! `resv_region_list_insert`), so the driver never sees overlapping
//! properties (a spec SHOULD). [`normalize`] computes the same list: every
//! region keeps the parts of it that no later region covers, as separate
//! pieces, sorted by address.

use crate::properties::ReservedRegion;

/// `VIRTIO_IOMMU_PROBE_T_RESV_MEM`.
pub const PROBE_T_RESV_MEM: u16 = 1;
/// `sizeof(struct virtio_iommu_probe_resv_mem)`, header included.
pub const RESV_MEM_PROP_SIZE: usize = 24;
/// Its `length` field: the size without the 4-byte property header.
pub const RESV_MEM_PROP_LENGTH: u16 = 20;

/// Sorted, disjoint regions; on overlap the later region of `regions` wins.
/// Regions with `end < start` (refused by the property checks) are dropped.
pub fn normalize(regions: &[ReservedRegion]) -> Vec<ReservedRegion> {
    let mut list: Vec<ReservedRegion> = Vec::new();
    for &new in regions.iter().filter(|r| r.start <= r.end) {
        let mut next = Vec::with_capacity(list.len().saturating_add(2));
        for old in list {
            if old.end < new.start || new.end < old.start {
                next.push(old);
                continue;
            }
            // The overlap checks make these subtractions and additions
            // stay in range: old.start < new.start <= u64::MAX, and
            // new.end < old.end.
            if old.start < new.start {
                next.push(ReservedRegion {
                    end: new.start.saturating_sub(1),
                    ..old
                });
            }
            if new.end < old.end {
                next.push(ReservedRegion {
                    start: new.end.saturating_add(1),
                    ..old
                });
            }
        }
        next.push(new);
        next.sort_by_key(|r| r.start);
        list = next;
    }
    list
}

/// The 24 bytes of one `RESV_MEM` property.
pub fn encode_resv_mem(region: &ReservedRegion) -> [u8; RESV_MEM_PROP_SIZE] {
    let mut out = [0u8; RESV_MEM_PROP_SIZE];
    let fields: [&[u8]; 6] = [
        &PROBE_T_RESV_MEM.to_le_bytes(),
        &RESV_MEM_PROP_LENGTH.to_le_bytes(),
        // The property checks only let 0 and 1 through; anything else
        // would be an unknown subtype, which drivers treat as RESERVED.
        &[u8::try_from(region.kind).unwrap_or(u8::MAX)],
        &[0; 3],
        &region.start.to_le_bytes(),
        &region.end.to_le_bytes(),
    ];
    for (dst, src) in out.iter_mut().zip(fields.into_iter().flatten()) {
        *dst = *src;
    }
    out
}

/// The `properties` bytes of a PROBE answer: one `RESV_MEM` property per
/// region, then zeroes up to `probe_size` (a zero type ends the list).
/// `None` if they do not fit: the C device then answers INVAL.
pub fn encode_properties(regions: &[ReservedRegion], probe_size: usize) -> Option<Vec<u8>> {
    let needed = regions.len().checked_mul(RESV_MEM_PROP_SIZE)?;
    if needed > probe_size {
        return None;
    }
    let mut out = Vec::with_capacity(probe_size);
    for r in regions {
        out.extend_from_slice(&encode_resv_mem(r));
    }
    out.resize(probe_size, 0);
    Some(out)
}

/// Parse the `RESV_MEM` properties of a PROBE answer, as a driver does: stop
/// at a zero type or when the next header does not fit; skip other types.
/// Returns `None` for a `RESV_MEM` property whose length is too short.
pub fn parse_properties(mut props: &[u8]) -> Option<Vec<ReservedRegion>> {
    let mut regions = Vec::new();
    while let Some((head, rest)) = props.split_first_chunk::<4>() {
        let kind = u16::from_le_bytes([head[0], head[1]]) & 0xfff;
        let length = usize::from(u16::from_le_bytes([head[2], head[3]]));
        if kind == 0 {
            break;
        }
        let value = rest.get(..length)?;
        if kind == PROBE_T_RESV_MEM {
            let (sub, v) = value.split_first_chunk::<4>()?;
            let (start, v) = v.split_first_chunk::<8>()?;
            let (end, _) = v.split_first_chunk::<8>()?;
            regions.push(ReservedRegion {
                start: u64::from_le_bytes(*start),
                end: u64::from_le_bytes(*end),
                kind: u32::from(sub[0]),
            });
        }
        props = rest.get(length..)?;
    }
    Some(regions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(start: u64, end: u64, kind: u32) -> ReservedRegion {
        ReservedRegion { start, end, kind }
    }

    #[test]
    fn property_layout() {
        let bytes = encode_resv_mem(&r(0x0807_0605_0403_0201, u64::MAX, 1));
        assert_eq!(bytes[0..4], [1, 0, 20, 0], "type 1, length 20");
        assert_eq!(bytes[4..8], [1, 0, 0, 0], "subtype, reserved");
        assert_eq!(bytes[8..16], [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(bytes[16..24], [0xff; 8]);
    }

    #[test]
    fn properties_fill_probe_size() {
        let regions = [r(0xfee0_0000, 0xfeef_ffff, 1), r(0, 0xfff, 0)];
        let props = encode_properties(&regions, 512).unwrap();
        assert_eq!(props.len(), 512);
        assert!(props[48..].iter().all(|&b| b == 0));
        assert_eq!(parse_properties(&props), Some(regions.to_vec()));
        assert_eq!(encode_properties(&[], 512), Some(vec![0; 512]));
    }

    #[test]
    fn properties_that_do_not_fit() {
        let regions = vec![r(0, 0, 0); 21];
        assert!(encode_properties(&regions, 512).is_some(), "21 * 24 = 504");
        let regions = vec![r(0, 0, 0); 22];
        assert_eq!(encode_properties(&regions, 512), None);
        assert_eq!(encode_properties(&regions, 528).map(|p| p.len()), Some(528));
    }

    #[test]
    fn parse_skips_unknown_and_rejects_short() {
        let mut props = vec![2, 0, 4, 0, 9, 9, 9, 9];
        props.extend_from_slice(&encode_resv_mem(&r(1, 2, 0)));
        assert_eq!(parse_properties(&props), Some(vec![r(1, 2, 0)]));
        assert_eq!(parse_properties(&[1, 0, 4, 0, 0, 0, 0, 0]), None);
        assert_eq!(parse_properties(&[1, 0, 20, 0]), None);
        assert_eq!(parse_properties(&[]), Some(vec![]));
    }

    #[test]
    fn normalize_cases() {
        assert_eq!(normalize(&[]), vec![]);
        // Disjoint: sorted, not merged even when adjacent.
        assert_eq!(
            normalize(&[r(10, 19, 0), r(0, 9, 0)]),
            [r(0, 9, 0), r(10, 19, 0)]
        );
        // A later region splits an earlier one in three.
        assert_eq!(
            normalize(&[r(0, 100, 0), r(10, 20, 1)]),
            [r(0, 9, 0), r(10, 20, 1), r(21, 100, 0)]
        );
        // ...and a later, bigger one swallows pieces.
        assert_eq!(
            normalize(&[r(0, 100, 0), r(10, 20, 1), r(5, 30, 0)]),
            [r(0, 4, 0), r(5, 30, 0), r(31, 100, 0)]
        );
        // Same start, same end, whole space.
        assert_eq!(
            normalize(&[r(0, 100, 0), r(0, 10, 1)]),
            [r(0, 10, 1), r(11, 100, 0)]
        );
        assert_eq!(
            normalize(&[r(0, 100, 0), r(90, 100, 1)]),
            [r(0, 89, 0), r(90, 100, 1)]
        );
        assert_eq!(
            normalize(&[r(5, u64::MAX, 0), r(0, u64::MAX, 1)]),
            [r(0, u64::MAX, 1)]
        );
        assert_eq!(normalize(&[r(2, 1, 0)]), []);
    }

    /// Which input region wins each address, by brute force.
    fn winner(regions: &[ReservedRegion], addr: u64) -> Option<usize> {
        regions
            .iter()
            .rposition(|x| x.start <= addr && addr <= x.end)
    }

    proptest! {
        #[test]
        fn normalize_is_last_region_wins(
            raw in prop::collection::vec((0u64..40, 0u64..40, 0u32..2), 0..8)
        ) {
            let regions: Vec<_> = raw
                .iter()
                .map(|&(a, b, k)| r(a.min(b), a.max(b), k))
                .collect();
            let list = normalize(&regions);
            // Sorted and disjoint.
            for w in list.windows(2) {
                prop_assert!(w[0].end < w[1].start);
            }
            // Each piece is a maximal run of addresses won by one region.
            let mut expected = Vec::new();
            let mut addr = 0u64;
            while addr < 41 {
                match winner(&regions, addr) {
                    None => addr += 1,
                    Some(i) => {
                        let start = addr;
                        while addr < 41 && winner(&regions, addr) == Some(i) {
                            addr += 1;
                        }
                        expected.push(r(start, addr - 1, regions[i].kind));
                    }
                }
            }
            prop_assert_eq!(list, expected);
        }
    }
}
