// SPDX-License-Identifier: GPL-2.0-or-later

//! How the cost of one `Mappings` operation grows with the number of
//! mappings: ns per lookup, MAP (`insert`) and UNMAP (`remove_range` of
//! exactly one mapping) at 10^3, 10^5 and 10^6 mappings of one domain,
//! with the operations visiting IOVAs in ascending order (a driver's
//! sequential allocator) and in a scattered order (cache-hostile).
//!
//!     cargo run --release -p virtio-iommu-core --example mapping_scaling
//!
//! The table is steady state: UNMAP then MAP again a tenth of the
//! mappings at a time, so the size stays within 10% of the nominal one.
//! The "+snap" columns do the same while keeping a snapshot (a clone) of
//! the mappings taken after every operation, as the device does for
//! lock-free translation: each write then copies its path, and dropping
//! the previous snapshot frees the old one.

use std::hint::black_box;
use std::time::Instant;

use virtio_iommu_core::{MapFlags, Mapping, Mappings};

const SIZES: [u64; 3] = [1_000, 100_000, 1_000_000];
/// Operations per measured figure (about; rounded to whole batches).
const OPS: u64 = 1_000_000;

/// The `i`th 4 KiB mapping, with a 4 KiB hole after each.
fn mapping(i: u64) -> Mapping {
    let start = i * 0x2000;
    Mapping {
        virt_start: start,
        virt_end: start + 0xfff,
        phys_start: 0x1_0000_0000 + start,
        flags: MapFlags::READ.union(MapFlags::WRITE),
    }
}

/// The index of the `k`th mapping visited: a fixed permutation of `0..n`
/// if `scattered` (the multiplier is coprime with every size).
fn visit(n: u64, scattered: bool, k: u64) -> u64 {
    if scattered {
        (k % n) * 7_919 % n
    } else {
        k % n
    }
}

fn ns_per(start: Instant, ops: u64) -> f64 {
    start.elapsed().as_nanos() as f64 / ops as f64
}

#[derive(Clone, Copy, Default)]
struct Row {
    lookup: f64,
    map: f64,
    unmap: f64,
    map_snap: f64,
    unmap_snap: f64,
}

fn measure(n: u64, scattered: bool) -> Row {
    let mut maps = Mappings::new();
    for k in 0..n {
        maps.insert(mapping(visit(n, scattered, k)))
            .expect("disjoint");
    }

    let start = Instant::now();
    for k in 0..OPS {
        let iova = mapping(visit(n, scattered, k)).virt_start + 0x123;
        black_box(maps.lookup(black_box(iova)));
    }
    let lookup = ns_per(start, OPS);

    let (map, unmap) = churn(&mut maps, n, scattered, false);
    let (map_snap, unmap_snap) = churn(&mut maps, n, scattered, true);
    Row {
        lookup,
        map,
        unmap,
        map_snap,
        unmap_snap,
    }
}

/// ns per MAP and per UNMAP, a tenth of the mappings at a time; with a
/// snapshot taken after each operation if `snapshots`.
fn churn(maps: &mut Mappings, n: u64, scattered: bool, snapshots: bool) -> (f64, f64) {
    let batch = (n / 10).max(1);
    let rounds = (OPS / batch).max(1);
    let mut snapshot = Mappings::new();
    let (mut map_ns, mut unmap_ns) = (0u128, 0u128);
    for round in 0..rounds {
        let first = round * batch;
        let start = Instant::now();
        for k in first..first + batch {
            let m = mapping(visit(n, scattered, k));
            black_box(maps.remove_range(m.virt_start, m.virt_end)).expect("exact");
            if snapshots {
                snapshot = maps.clone();
            }
        }
        unmap_ns += start.elapsed().as_nanos();
        let start = Instant::now();
        for k in first..first + batch {
            maps.insert(mapping(visit(n, scattered, k))).expect("free");
            if snapshots {
                snapshot = maps.clone();
            }
        }
        map_ns += start.elapsed().as_nanos();
    }
    black_box(snapshot);
    assert_eq!(maps.len() as u64, n);
    let ops = (rounds * batch) as f64;
    (map_ns as f64 / ops, unmap_ns as f64 / ops)
}

fn main() {
    for scattered in [false, true] {
        let name = if scattered { "scattered" } else { "ascending" };
        println!("{name} IOVAs, ns/op:");
        println!(
            "{:>10} {:>8} {:>8} {:>8} {:>10} {:>10}",
            "mappings", "lookup", "MAP", "UNMAP", "MAP+snap", "UNMAP+snap"
        );
        let rows: Vec<Row> = SIZES.iter().map(|&n| measure(n, scattered)).collect();
        for (n, r) in SIZES.iter().zip(&rows) {
            println!(
                "{n:>10} {:>8.1} {:>8.1} {:>8.1} {:>10.1} {:>10.1}",
                r.lookup, r.map, r.unmap, r.map_snap, r.unmap_snap
            );
        }
        let (small, large) = (rows[0], rows[rows.len() - 1]);
        println!(
            "{:>10} {:>7.2}x {:>7.2}x {:>7.2}x {:>9.2}x {:>9.2}x",
            "10^6/10^3",
            large.lookup / small.lookup,
            large.map / small.map,
            large.unmap / small.unmap,
            large.map_snap / small.map_snap,
            large.unmap_snap / small.unmap_snap
        );
        println!();
    }
}
