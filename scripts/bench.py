#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""`make bench`: the Rust DMA API and virtio-iommu-rs against QEMU's C path
and C device, measured in one run, as one table and one line per target.

Two parts, run one after the other:
  - the qtest binary tests/qtest/virtio-iommu-rs-bench (source in
    tests-qtest/virtio-iommu-rs-bench.c, which says what each sample is),
    under -accel qtest: DMA by the x-dma-test device without an IOMMU and
    behind each IOMMU, MAP+UNMAP request rate, memory per mapping, and the
    migration of many mappings (the virtio-iommu section's size, and its
    save and load times from QEMU's vmstate_downtime trace events). It
    prints raw samples; this script takes their medians.
  - scripts/guest/disk-read-bench.py: a TCG Linux guest reading its
    virtio-blk disk with O_DIRECT dd, with no IOMMU and behind each device
    in strict and lazy mode.

Every figure in the table is a median over repetitions; every ratio is the
quotient of two figures printed above it, both from this run. The target
lines are computed from those ratios, nothing else.

    scripts/bench.py [--reps N] [--pairs N] [--mappings N] [--memory-reps N]
                     [--migration-mappings N] [--migration-reps N]
                     [--guest-passes N] [--guest-reads BS:MIB,...] [--no-guest]
                     [--report-only] [--qemu PATH] [--bench-bin PATH] [--guest DIR]

Raw output goes to build/bench/ (qtest.log, guest.json, guest.log);
--report-only prints the table again from it without measuring."""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")
# The raw output of the last run, for --report-only and for the record
OUT = os.path.join(BUILD, "bench")

SIZES = [8, 64, 4096, 65536]
SIZE_NAMES = {8: "8 B", 64: "64 B", 4096: "4 KiB", 65536: "64 KiB"}
SMALL = [8, 64]
MACHINES = [("none", "no IOMMU"), ("c", "C device"), ("rust", "Rust device")]

# The goals of issue 5 (item 4) and issue 12.
GOAL_BYPASS = 1.02        # Rust API / pci_dma_rw without an IOMMU, <=
GOAL_SPEEDUP = 5.0        # pci_dma_rw / Rust API behind the C device, small, >=
GOAL_VS_BYPASS = 1.10     # Rust API behind an IOMMU / Rust API without, <=
GOAL_MAP_UNMAP = 2.0      # our pairs/s / C's, >=
GOAL_CYCLE = 0.5          # strict cycle, Rust device + API / C device + pci_dma_rw, 4 KiB, <=
GOAL_PCI_DMA = 0.85       # pci_dma_rw behind ours / behind C, 8 B and 64 B, <=
GOAL_SCALING = 2.0        # our translation at 10^6 mappings / at 10^3, <=
CYCLE_SIZES = [4096, 65536]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def cpu_seconds():
    """(busy CPU seconds of the whole host, CPU seconds the hypervisor
    stole from it, CPU seconds of our waited-for descendants): over a part
    of the run, the first's growth minus the third's is what other work
    took from the cores while we measured; steal is time our vCPUs did not
    run at all, whoever was on them."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    busy = v[0] + v[1] + v[2] + v[5] + v[6]   # user nice system irq softirq
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return busy / hz, v[7] / hz, ru.ru_utime + ru.ru_stime


def parse_bench(lines):
    """BENCH lines -> list of (kind, {key: value}) with numbers as ints."""
    out = []
    for line in lines:
        if not line.startswith("BENCH "):
            continue
        kind, *kvs = line.split()[1:]
        rec = {}
        for kv in kvs:
            k, v = kv.split("=", 1)
            rec[k] = int(v) if v.lstrip("-").isdigit() else v
        out.append((kind, rec))
    return out


def run_qtest(a):
    env = dict(os.environ,
               QTEST_QEMU_BINARY=a.qemu,
               VIOMMU_BENCH_REPS=str(a.reps),
               VIOMMU_BENCH_COUNT_SCALE=str(a.count_scale),
               VIOMMU_BENCH_PAIRS=str(a.pairs),
               VIOMMU_BENCH_CYCLES=str(a.cycles),
               VIOMMU_BENCH_SCALE_MAX=str(a.scale_max),
               VIOMMU_BENCH_MAPPINGS=str(a.mappings),
               VIOMMU_BENCH_MEMORY_REPS=str(a.memory_reps),
               VIOMMU_BENCH_MIGRATION_MAPPINGS=str(a.migration_mappings),
               VIOMMU_BENCH_MIGRATION_REPS=str(a.migration_reps))
    t0 = time.monotonic()
    host0, steal0, ours0 = cpu_seconds()
    p = subprocess.run([a.bench_bin, "--tap", "-k"], env=env, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    host1, steal1, ours1 = cpu_seconds()
    wall = time.monotonic() - t0
    other = max(0.0, (host1 - host0) - (ours1 - ours0)) / wall
    steal = (steal1 - steal0) / wall
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "qtest.log"), "w") as f:
        f.write(p.stdout)
        f.write(f"# wall {wall} other {other} steal {steal}\n")
    if p.returncode != 0 or "not ok" in p.stdout:
        sys.stdout.write(p.stdout)
        sys.exit(f"bench: {a.bench_bin} failed (exit {p.returncode}); "
                 "no figures from a run that did not measure what it says")
    return parse_bench(p.stdout.splitlines()), wall, other, steal


def saved_qtest():
    with open(os.path.join(OUT, "qtest.log")) as f:
        lines = f.read().splitlines()
    _, wall, _, other, _, steal = lines[-1].split()[1:]
    return parse_bench(lines), float(wall), float(other), float(steal)


def run_guest(a):
    out = OUT
    os.makedirs(out, exist_ok=True)
    js = os.path.join(out, "guest.json")
    logf = os.path.join(out, "guest.log")
    if os.path.exists(js):
        os.unlink(js)
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "guest", "disk-read-bench.py"),
           "--qemu", a.qemu, "--guest", a.guest, "--passes", str(a.guest_passes),
           "--reads", a.guest_reads, "--out", os.path.join(out, "guest"), "--json", js]
    t0 = time.monotonic()
    with open(logf, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    wall = time.monotonic() - t0
    if not os.path.exists(js):
        sys.exit(f"bench: the guest benchmark failed (exit {rc}), see {logf}")
    with open(js) as f:
        return json.load(f), rc, logf, wall


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def spread(xs):
    """(max - min) / median: how much the repetitions of a figure moved."""
    m = med(xs)
    return (max(xs) - min(xs)) / m if m else 0.0


def ratio(a, b):
    return a / b if a is not None and b else None


class Table:
    """One table: a label column and up to four figure columns, with
    heading rows wherever the columns change meaning."""

    def __init__(self):
        self.rows = []      # ("head", label, [cells]) | ("row", label, [cells])

    def head(self, label, cols):
        self.rows.append(("head", label, cols))

    def row(self, label, cells):
        self.rows.append(("row", label, cells))

    def print(self):
        lw = max(len(r[1]) for r in self.rows) + 2
        cw = max([10] + [len(c) for r in self.rows for c in r[2]]) + 2
        for kind, label, cells in self.rows:
            if kind == "head":
                print()
            print(label.ljust(lw) + "".join(c.rjust(cw) for c in cells))


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if unit == "x":
        return f"{v:.2f}x"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.1f}"


def target(name, value, op, goal, what):
    if value is None:
        print(f"target {name}: n/a (goal {op} {goal:g}) missed   [{what}; no figure]")
        return
    met = value <= goal if op == "<=" else value >= goal
    print(f"target {name}: {value:.2f} (goal {op} {goal:g}) {'met' if met else 'missed'}"
          f"   [{what}]")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--qemu", default=os.path.join(BUILD, "bin", "qemu-system-x86_64"))
    ap.add_argument("--bench-bin", default=os.path.join(
        BUILD, "qemu-build", "tests", "qtest", "virtio-iommu-rs-bench"))
    ap.add_argument("--guest", default=os.path.join(BUILD, "guest"))
    # Eleven repetitions of commands of tens of milliseconds: shorter ones
    # (COUNT as the binary's defaults) moved by up to 80% between
    # repetitions here, under hypervisor steal.
    ap.add_argument("--reps", type=int, default=11,
                    help="repetitions per DMA and MAP+UNMAP figure")
    ap.add_argument("--count-scale", type=int, default=10,
                    help="multiply the COUNT of every DMA command")
    ap.add_argument("--pairs", type=int, default=16384, help="MAP+UNMAP pairs per repetition")
    ap.add_argument("--cycles", type=int, default=2000,
                    help="strict-mode MAP+COPY+UNMAP cycles per repetition")
    ap.add_argument("--scale-max", type=int, default=1000000,
                    help="largest mapping count of the scaling figures (10^3, 10^5, 10^6)")
    ap.add_argument("--mappings", type=int, default=1000000,
                    help="mappings for the memory figure")
    ap.add_argument("--memory-reps", type=int, default=3,
                    help="fresh QEMUs per device for the memory figure")
    ap.add_argument("--migration-mappings", type=int, default=100000,
                    help="mappings for the migration figures")
    ap.add_argument("--migration-reps", type=int, default=3,
                    help="migrations per device for the migration figures")
    ap.add_argument("--guest-passes", type=int, default=5)
    ap.add_argument("--guest-reads", default="1M:128,64K:64,4K:16",
                    help="BS:MiB,... read by the guest per configuration")
    ap.add_argument("--no-guest", action="store_true", help="skip the guest figures")
    ap.add_argument("--report-only", action="store_true",
                    help="measure nothing: the table from the last run's output in build/bench")
    a = ap.parse_args()

    t_start = time.monotonic()
    guest = None
    guest_wall, guest_rc = 0, 0
    guest_log = os.path.join(OUT, "guest.log")
    if a.report_only:
        samples, qtest_wall, qtest_other, qtest_steal = saved_qtest()
        if not a.no_guest and os.path.exists(os.path.join(OUT, "guest.json")):
            with open(os.path.join(OUT, "guest.json")) as f:
                guest = json.load(f)
            guest_wall = guest["wall_s"]
    else:
        log(f"bench: device-level measurements ({a.bench_bin}) ...")
        samples, qtest_wall, qtest_other, qtest_steal = run_qtest(a)
        log(f"bench: {qtest_wall:.0f} s")
    if not a.no_guest and not a.report_only:
        log(f"bench: guest disk reads, 5 configurations x {a.guest_passes} passes "
            f"(scripts/guest/disk-read-bench.py) ...")
        guest, guest_rc, guest_log, guest_wall = run_guest(a)
        log(f"bench: {guest_wall:.0f} s; its own output: {guest_log}")

    # -- DMA: ns per COPY ---------------------------------------------------
    dma = {}        # (iommu, path, size) -> [ns per COPY per rep]
    for kind, r in samples:
        if kind == "dma":
            dma.setdefault((r["iommu"], r["path"], r["size"]), []).append(
                r["elapsed_ns"] / r["count"])
    ns = {k: med(v) for k, v in dma.items()}
    counts = {r["size"]: r["count"] for k, r in samples if k == "dma" and r["rep"] == 0}
    reps = max((r["rep"] for k, r in samples if k == "dma"), default=-1) + 1

    t = Table()
    t.head("DMA by x-dma-test, ns per COPY (median of %d)" % reps,
           [SIZE_NAMES[s] for s in SIZES])
    rows = {}
    for key, name in MACHINES:
        c = [ns.get((key, "c", s)) for s in SIZES]
        rust = [ns.get((key, "rust", s)) for s in SIZES]
        t.row(f"{name}: C pci_dma_rw", [fmt(v) for v in c])
        t.row(f"{name}: Rust API", [fmt(v) for v in rust])
        if key == "none":
            rows["bypass"] = [ratio(r_, c_) for r_, c_ in zip(rust, c)]
            t.row("  ratio Rust API / C pci_dma_rw", [fmt(v, "x") for v in rows["bypass"]])
        else:
            rows[f"speedup-{key}"] = [ratio(c_, r_) for r_, c_ in zip(rust, c)]
            rows[f"vs-bypass-{key}"] = [ratio(r_, ns.get(("none", "rust", s)))
                                        for r_, s in zip(rust, SIZES)]
            t.row("  ratio C pci_dma_rw / Rust API",
                  [fmt(v, "x") for v in rows[f"speedup-{key}"]])
            t.row("  ratio Rust API / Rust API no IOMMU",
                  [fmt(v, "x") for v in rows[f"vs-bypass-{key}"]])

    # pci_dma_rw's cost is mostly the IOMMU's translate: behind ours / C's
    rows["pci-dma"] = [ratio(ns.get(("rust", "c", s)), ns.get(("c", "c", s))) for s in SIZES]
    t.row("pci_dma_rw behind Rust device / behind C device",
          [fmt(v, "x") for v in rows["pci-dma"]])

    # -- the strict-mode cycle ----------------------------------------------
    cyc = {}        # (iommu, path, size) -> [(MAP, COPY, UNMAP) median ns, per rep]
    for kind, r in samples:
        if kind == "cycle":
            cyc.setdefault((r["iommu"], r["path"], r["size"]), []).append(
                (r["map_ns"], r["dma_ns"], r["unmap_ns"]))
    cycle_total = {k: med([sum(x) for x in v]) for k, v in cyc.items()}
    cycle_ratio = {}
    ncyc = 0
    if cyc:
        ncyc = next(r["cycles"] for k, r in samples if k == "cycle")
        t.head(f"strict-mode cycle, device ns (median of {len(next(iter(cyc.values())))})",
               [x for s in CYCLE_SIZES for x in (SIZE_NAMES[s], "MAP/COPY/UNMAP")])
        for dev, dname in (("c", "C device"), ("rust", "Rust device")):
            for path, pname in (("c", "pci_dma_rw"), ("rust", "Rust API")):
                cells, spreads = [], []
                for s in CYCLE_SIZES:
                    reps_ = cyc.get((dev, path, s), [])
                    v = [sum(x) for x in reps_]
                    parts = "/".join(fmt(med([x[i] for x in reps_])) for i in range(3))
                    cells += [fmt(med(v)), parts]
                    spreads += [f"{spread(v):.0%}" if v else "n/a", ""]
                t.row(f"{dname} + {pname}", cells)
                t.row("  spread (max-min)/median", spreads)
        for s in CYCLE_SIZES:
            cycle_ratio[s] = ratio(cycle_total.get(("rust", "rust", s)),
                                   cycle_total.get(("c", "c", s)))
        t.row("  ratio Rust device + Rust API / C device + pci_dma_rw",
              [x for s in CYCLE_SIZES for x in (fmt(cycle_ratio[s], "x"), "")])

    # -- scaling --------------------------------------------------------------
    sc = {}         # (iommu, mappings) -> [(copy ns, map ns, unmap ns) per rep]
    for kind, r in samples:
        if kind == "scale":
            sc.setdefault((r["iommu"], r["mappings"]), []).append(
                (r["copy_ns"] / r["copies"], r["map_ns"] / r["requests"],
                 r["unmap_ns"] / r["requests"]))
    scale_counts = sorted({m for _, m in sc})
    scale_growth = None
    if sc:
        t.head("cost against mappings in the domain, ns (median)",
               [f"{m:,}" for m in scale_counts] + ["last / first"])
        for dev, dname in (("c", "C device"), ("rust", "Rust device")):
            for i, what in enumerate(("8 B pci_dma_rw (translate)", "MAP", "UNMAP")):
                v = [med([x[i] for x in sc.get((dev, m), [])]) for m in scale_counts]
                g = ratio(v[-1], v[0]) if len(v) > 1 else None
                if dev == "rust" and i == 0:
                    scale_growth = g
                t.row(f"{dname}: {what}", [fmt(x) for x in v] + [fmt(g, "x")])

    # -- MAP+UNMAP and memory -----------------------------------------------
    mu = {}         # iommu -> [pairs/s, wall clock]
    mu_dev = {}     # iommu -> [pairs/s, the device's own time]
    batch = pairs = None
    for kind, r in samples:
        if kind == "mapunmap":
            mu.setdefault(r["iommu"], []).append(r["pairs"] / (r["elapsed_ns"] / 1e9))
            if r.get("device_ns", 0) > 0:
                mu_dev.setdefault(r["iommu"], []).append(
                    r["pairs"] / (r["device_ns"] / 1e9))
            batch, pairs = r["batch"], r["pairs"]
    mem = {}        # iommu -> [sample per rep]
    for kind, r in samples:
        if kind == "memory":
            mem.setdefault(r["iommu"], []).append(r)
    t.head("IOMMU requests", ["C device", "Rust device", "Rust / C"])
    pc, pr = med(mu.get("c", [])), med(mu.get("rust", []))
    dc, dr = med(mu_dev.get("c", [])), med(mu_dev.get("rust", []))
    mu_ratio = ratio(dr, dc)
    t.row(f"MAP+UNMAP pairs/s, device time (median of {len(mu_dev.get('c', []))})",
          [fmt(dc), fmt(dr), fmt(mu_ratio, "x")])
    t.row("  the same, wall clock with the qtest driver",
          [fmt(pc), fmt(pr), fmt(ratio(pr, pc), "x")])
    def per_mapping(r, before, after):
        return (r[after] - r[before]) * 1024 / r["mappings"]

    per_map = {k: med([per_mapping(r, "rss_anon_before_kib", "rss_anon_after_kib")
                       for r in v]) for k, v in mem.items()}
    vmrss_map = {k: med([per_mapping(r, "vmrss_before_kib", "vmrss_after_kib")
                         for r in v]) for k, v in mem.items()}
    map_rate = {k: med([r["mappings"] / (r["map_ns"] / 1e9) for r in v])
                for k, v in mem.items()}
    nmaps = next((v[0]["mappings"] for v in mem.values()), None)
    mem_reps = len(mem.get("c", []))
    mem_ratio = ratio(per_map.get("rust"), per_map.get("c"))
    t.row(f"bytes per mapping at {nmaps:,} mappings (median of {mem_reps})"
          if nmaps else "bytes per mapping",
          [fmt(per_map.get("c")), fmt(per_map.get("rust")), fmt(mem_ratio, "x")])
    t.row("  MAP requests/s while making them",
          [fmt(map_rate.get("c")), fmt(map_rate.get("rust")),
           fmt(ratio(map_rate.get("rust"), map_rate.get("c")), "x")])

    # -- migration -----------------------------------------------------------
    mig = {}        # iommu -> [sample per rep]
    for kind, r in samples:
        if kind == "migration":
            mig.setdefault(r["iommu"], []).append(r)
    if mig:
        n = mig[next(iter(mig))][0]["mappings"]
        t.head(f"migration at {n:,} mappings (median of {len(mig.get('c', []))})",
               ["C device", "Rust device", "Rust / C"])
        for key, label in (("section_bytes", "virtio-iommu section, bytes"),
                           ("save_us", "save, us (VM stopped)"),
                           ("load_us", "load, us")):
            c_, r_ = (med([x[key] for x in mig.get(k, [])]) for k in ("c", "rust"))
            t.row(label, [fmt(c_), fmt(r_), fmt(ratio(r_, c_), "x")])

    # -- guest --------------------------------------------------------------
    gfig = {}
    strict = lazy = None
    if guest:
        sizes = guest["sizes"]
        t.head(f"guest O_DIRECT reads, MB/s (median of {guest['passes']} passes)",
               [bs + "B" for bs in sizes])
        for c in guest["configs"]:
            gfig[c["name"]] = [med(c["MBps"][bs]) for bs in sizes]
            # The disk's IOMMU group and its type, as the guest saw it: a
            # disk in no group did not translate, whatever the device.
            note = ("" if c["device"] is None else
                    "  [FAILED, see below]" if c["note"].startswith("FAILED") else
                    f"  [disk group {c['note']}]")
            label = c["name"] + note
            t.row(label, [fmt(v) for v in gfig[c["name"]]])
            t.row("  spread (max-min)/median",
                  [f"{spread(c['MBps'][bs]):.0%}" if c["MBps"][bs] else "n/a" for bs in sizes])
        strict = [ratio(r_, c_) for r_, c_ in zip(gfig["Rust strict"], gfig["C strict"])]
        lazy = [ratio(r_, c_) for r_, c_ in zip(gfig["Rust lazy"], gfig["C lazy"])]
        t.row("  ratio Rust strict / C strict", [fmt(v, "x") for v in strict])
        t.row("  ratio Rust lazy / C lazy", [fmt(v, "x") for v in lazy])
        t.row("  ratio C strict / none",
              [fmt(ratio(x, y), "x") for x, y in zip(gfig["C strict"], gfig["none"])])
        t.row("  ratio Rust strict / none",
              [fmt(ratio(x, y), "x") for x, y in zip(gfig["Rust strict"], gfig["none"])])

    print("virtio-iommu-rs bench: figures are medians of repeated runs; every ratio "
          "is of two figures in this table, from this run")
    t.print()
    print()

    # -- targets ------------------------------------------------------------
    def worst(vals, pick):
        vals = [v for v in vals if v is not None]
        return pick(vals) if vals else None

    b = rows["bypass"]
    target("bypass", worst(b, max), "<=", GOAL_BYPASS,
           "no IOMMU, Rust API / C pci_dma_rw, worst of the 4 sizes")
    sp = rows["speedup-c"][:len(SMALL)]
    target("iommu-small-speedup", worst(sp, min), ">=", GOAL_SPEEDUP,
           "behind the C device, C pci_dma_rw / Rust API, worse of 8 B and 64 B")
    vb = rows["vs-bypass-c"] + rows["vs-bypass-rust"]
    target("iommu-vs-bypass", worst(vb, max), "<=", GOAL_VS_BYPASS,
           "Rust API behind an IOMMU / without, worst of both devices x 4 sizes")
    target("map-unmap", mu_ratio, ">=", GOAL_MAP_UNMAP,
           "MAP+UNMAP pairs/s in device time, Rust device / C")
    target("strict-cycle", cycle_ratio.get(4096), "<=", GOAL_CYCLE,
           "MAP+COPY+UNMAP at 4 KiB, Rust device + Rust API / C device + pci_dma_rw")
    target("pci-dma-rw", worst(rows["pci-dma"][:len(SMALL)], max), "<=", GOAL_PCI_DMA,
           "pci_dma_rw behind the Rust device / behind the C device, worse of 8 B and 64 B")
    target("translate-scaling", scale_growth, "<=", GOAL_SCALING,
           f"Rust device, 8 B pci_dma_rw at {scale_counts[-1] if scale_counts else 0:,} "
           f"mappings / at {scale_counts[0] if scale_counts else 0:,}")
    print("(the guest reads have no target: under TCG their spread is larger than the "
          "difference between the devices)")

    # -- what the figures are -----------------------------------------------
    dma_spread = max(((spread(v), k) for k, v in dma.items()), default=(0, None))
    mu_spread = max((spread(v) for v in mu.values()), default=0)
    print()
    print(f"COPY = one DMA read of SRC and one DMA write of DST, of the size, inside "
          f"one x-dma-test command (COUNT "
          + ", ".join(f"{counts[s]} at {SIZE_NAMES[s]}" for s in SIZES if s in counts)
          + "); ns from "
          "the device's ELAPSED register / COUNT.")
    print(f"MAP+UNMAP: {pairs} distinct 4 KiB IOVAs mapped then unmapped, {batch} requests "
          "per notify, same driver for both devices. Device time: under qtest the device "
          "answers a whole batch inside the notify write, so it is the notifies' duration "
          "less one qtest round trip each (measured right after each); wall clock adds the "
          "driver's writes of the requests and reads of the answers.")
    if cyc:
        print(f"strict-mode cycle: {ncyc} I/Os per repetition, each its buffer's MAP, one "
              "COPY into it and its UNMAP, in batches of as many I/Os as the request queue "
              "holds (one notify for the MAPs, one for the UNMAPs); a repetition's figure is "
              "the median MAP (device time, as MAP+UNMAP below, per request) + the median "
              "COPY (ELAPSED) + the median UNMAP. x-dma-test's UNMAP notifier is registered, "
              "so an UNMAP also invalidates its IOTLB. Spread: (max-min)/median over the "
              "repetitions.")
        print("scaling: one QEMU per device grown to each mapping count (pages 8 KiB apart "
              "in the endpoint's domain); translate = an 8-byte COPY through pci_dma_rw, "
              "which asks the IOMMU on every access; MAP and UNMAP as for MAP+UNMAP, "
              "device time per request.")
    if mig:
        print("migration: the MAPs of the memory figure's kind, then migrate to a file and "
              "load it into a new QEMU with the same IOMMU; save and load are QEMU's "
              "vmstate_downtime_save/_load trace events for the virtio-iommu section (the "
              "time it adds to the downtime).")
    if mem:
        print("bytes per mapping: growth of the QEMU process's RssAnon (anonymous resident "
              "memory) over the MAPs / the number of mappings, a fresh QEMU each time; by "
              "VmRSS instead: " + ", ".join(f"{k} {v:.1f}" for k, v in vmrss_map.items())
              + ".")
    busy = qtest_other + qtest_steal
    print(f"host: during the device-level part other work took {qtest_other:.2f} and the "
          f"hypervisor stole {qtest_steal:.2f} of {os.cpu_count()} cores on average "
          "(both 0 on a quiet machine; the more, the noisier)"
          + ("; WARNING: a busy host, take the figures as rough." if busy > 0.25 else "."))
    if dma_spread[1]:
        k = dma_spread[1]
        print(f"noise: the widest DMA figure ({k[0]}, {k[1]} path, {k[2]} B) moved "
              f"{dma_spread[0]:.0%} (max-min)/median over its repetitions; MAP+UNMAP "
              f"{mu_spread:.0%}.")
    if guest:
        print(f"guest: TCG, host busy before start {guest['host_busy_before']:.2f} cores, "
              f"other work during it {guest['other_cores']:.2f} cores; full log {guest_log}")
        for c in guest["configs"]:
            if c["note"].startswith("FAILED"):
                print(f"guest: {c['name']}: a pass {c['note']}; its figures are the median "
                      "of the passes that finished")
            elif c["note"] == "none":
                print(f"guest: {c['name']}: the disk is in no IOMMU group: the guest mapped "
                      "nothing, its figure is not the cost of translation")
    total = qtest_wall + guest_wall if a.report_only else time.monotonic() - t_start
    print(f"bench: {total:.0f} s in all (qtest part {qtest_wall:.0f} s"
          + (f", guest part {guest_wall:.0f} s)" if guest else ")"))
    # A guest pass that failed makes the run fail, its figures shown anyway
    failed = guest and any(c["note"].startswith("FAILED") for c in guest["configs"])
    return 1 if guest_rc or failed else 0


if __name__ == "__main__":
    sys.exit(main())
