// SPDX-License-Identifier: GPL-2.0-or-later

//! Lock-free translation as the glue does it, with std threads: one writer
//! applies MAP and UNMAP requests to the `Device`, publishes a new
//! `TranslationView` after each, and only then "answers" the request by
//! storing its sequence number; readers translate with whatever view is
//! published, holding each for several translations while the writer goes
//! on (so the copy-on-write of the mappings is exercised under them).
//!
//! Readers check what the glue relies on: a request answered before the
//! view was loaded is in it (an UNMAP'd mapping is never used again, a
//! MAP'd one always found), and every view decides exactly as the device
//! did when it was taken. The published slot here is a `Mutex<Arc<_>>`
//! cloned out: the glue uses an atomic pointer and RCU, but the property
//! under test is the snapshots' semantics, not the slot.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use common::*;
use virtio_iommu_core::{Fault, FaultReason, Perm, Translated, TranslationView};

/// Pages mapped and unmapped in turn, and rounds of doing so.
const PAGES: u64 = 64;
const ROUNDS: u64 = 200;
const REQUESTS: u64 = 2 * PAGES * ROUNDS;
const READERS: usize = 3;
const ENDPOINT: u32 = 1;
const DOMAIN: u32 = 1;

const fn iova(page: u64) -> u64 {
    0x10_0000 + page * 0x2000
}

/// A different address each round, so a stale view would show.
const fn phys(round: u64, page: u64) -> u64 {
    0x1_0000_0000 + (round * PAGES + page) * 0x1000
}

/// Request `seq` (from 1): round r maps every page, then unmaps them all.
fn request(seq: u64) -> Vec<u8> {
    let index = seq - 1;
    let (round, at) = (index / (2 * PAGES), index % (2 * PAGES));
    if at < PAGES {
        map(DOMAIN, iova(at), iova(at) + 0xfff, phys(round, at), RW)
    } else {
        let page = at - PAGES;
        unmap(DOMAIN, iova(page), iova(page) + 0xfff)
    }
}

/// The sequence number of the UNMAP of `page` in `round`.
const fn unmap_seq(round: u64, page: u64) -> u64 {
    round * 2 * PAGES + PAGES + page + 1
}

/// The round whose mapping of `page` is live once requests `1..=seq` are
/// done, if any.
fn live_round(seq: u64, page: u64) -> Option<u64> {
    let done = seq.checked_sub(1)?;
    let (round, at) = (done / (2 * PAGES), done % (2 * PAGES));
    let mapped = if at < PAGES {
        page <= at
    } else {
        page > at - PAGES
    };
    mapped.then_some(round)
}

/// A tiny deterministic generator: the test must not need a crate.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn views_are_snapshots_that_never_lag_an_answer() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TranslationView>();

    let mut dev = device();
    dev.set_bypass(false);
    ok(&mut dev, &attach(DOMAIN, ENDPOINT));

    // What the glue's atomic pointer holds: the view, and (for checking
    // only) the sequence number of the last request it includes.
    let published = Arc::new(Mutex::new((0u64, Arc::new(dev.view()))));
    let answered = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(READERS + 1));
    // Bounded: readers outpace the writer, and a full channel drops
    // faults as the device's full fault queue would.
    let (faults_tx, faults_rx) = mpsc::sync_channel::<Fault>(64);

    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let published = Arc::clone(&published);
            let answered = Arc::clone(&answered);
            let faults_tx = faults_tx.clone();
            let start = Arc::clone(&start);
            thread::spawn(move || {
                let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ (r as u64 + 1));
                let (mut translations, mut mapped, mut views) = (0u64, 0u64, 0u64);
                let mut last = None;
                start.wait();
                loop {
                    // Answers first, then the view: whatever was answered
                    // must be in it.
                    let seen = answered.load(Ordering::Acquire);
                    let (taken, view) = {
                        let slot = published.lock().unwrap();
                        (slot.0, Arc::clone(&slot.1))
                    };
                    assert!(taken >= seen, "view of {taken} after answer {seen}");
                    assert!(last <= Some(taken), "views go forward");
                    views += u64::from(last != Some(taken));
                    last = Some(taken);
                    for _ in 0..8 {
                        let page = rng.next() % PAGES;
                        let addr = iova(page) + rng.next() % 0x1000;
                        let got = view.decide(ENDPOINT, addr, Perm::READ);
                        translations += 1;
                        match got {
                            Translated::Mapped(m) => {
                                mapped += 1;
                                let round = live_round(taken, page);
                                assert_eq!(
                                    Some(m.phys(addr)),
                                    round.map(|round| phys(round, page) + (addr - iova(page))),
                                    "view {taken}, page {page}"
                                );
                                // Never a mapping whose UNMAP was answered
                                // before the load.
                                let of_round = (m.phys_start - phys(0, page)) / (PAGES * 0x1000);
                                assert!(
                                    unmap_seq(of_round, page) > seen,
                                    "unmapped page {page} used"
                                );
                            }
                            Translated::Fault(f) => {
                                assert_eq!(f.reason, FaultReason::Mapping);
                                assert_eq!(live_round(taken, page), None, "view {taken}");
                                // A MAP answered before the load is seen
                                // unless the view is newer than its UNMAP.
                                if let Some(round) = live_round(seen, page) {
                                    assert!(
                                        taken >= unmap_seq(round, page),
                                        "map of page {page} lost"
                                    );
                                }
                                let _ = faults_tx.try_send(f);
                            }
                            Translated::Identity => panic!("identity in a mapped domain"),
                        }
                    }
                    if seen == REQUESTS {
                        return (translations, mapped, views);
                    }
                }
            })
        })
        .collect();
    drop(faults_tx);

    let mut queued = 0u64;
    start.wait();
    for seq in 1..=REQUESTS {
        ok(&mut dev, &request(seq));
        *published.lock().unwrap() = (seq, Arc::new(dev.view()));
        answered.store(seq, Ordering::Release);
        // The glue queues the faults readers decided under its lock.
        for fault in faults_rx.try_iter() {
            dev.queue_fault(fault);
            queued += 1;
        }
    }
    let mut total = 0;
    for reader in readers {
        let (translations, mapped, views) = reader.join().unwrap();
        eprintln!("reader: {translations} translations ({mapped} mapped) in {views} views");
        assert!(mapped > 0 && mapped < translations, "both outcomes seen");
        total += translations;
    }
    for fault in faults_rx.iter() {
        dev.queue_fault(fault);
        queued += 1;
    }
    assert!(total >= READERS as u64 * 8);
    assert_eq!(dev.counters().faults_raised(), queued);
    assert!(
        dev.mappings(DOMAIN).unwrap().is_empty(),
        "every round ends unmapped"
    );
}
