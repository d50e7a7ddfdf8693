#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Guest disk-read throughput behind each IOMMU, measured back to back.

Boots the functional-test guest (TCG, q35) once per configuration:
    none          no IOMMU (the disk still has iommu_platform=on)
    C strict      virtio-iommu-pci, iommu.strict=1
    C lazy        virtio-iommu-pci, iommu.strict=0
    Rust strict   virtio-iommu-rs,  iommu.strict=1
    Rust lazy     virtio-iommu-rs,  iommu.strict=0
and times O_DIRECT `dd` reads of the virtio-blk disk inside the guest for a
few block sizes. TCG figures move by tens of percent between runs and with
host load, so only the ratios to "none" from the same pass mean anything;
use --passes N to see how stable they are.

    scripts/guest/disk-read-bench.py [--passes N] [--reads 1M:1024,64K:256,4K:32]
                                     [--qemu PATH] [--guest DIR] [--out DIR]
                                     [--json FILE] [--qemu-python DIR]

Each boot is the functional tests' (tests-functional/viommu_rs/guest.py) on
a QEMUMachine from QEMU's python/ directory (--qemu-python, by default the
prepared tree's); its console log and QEMU's output stay under --out.

--json writes every figure (per configuration, block size and pass) to FILE
as well, for scripts/bench.py (`make bench`), which makes its own table.

The "groups" column is what the guest's endpoints got: a row whose disk is
in no IOMMU group did not translate its DMA, whatever the device, and its
figure is not the cost of guest-managed translation."""

import argparse
import json
import logging
import os
import resource
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests-functional"))
from viommu_rs import guest  # noqa: E402

CONFIGS = [
    ("none", None, "strict"),
    ("C strict", "virtio-iommu-pci", "strict"),
    ("C lazy", "virtio-iommu-pci", "lazy"),
    ("Rust strict", "virtio-iommu-rs", "strict"),
    ("Rust lazy", "virtio-iommu-rs", "lazy"),
]


def cpu_seconds():
    """(seconds of busy CPU on the whole host, CPU seconds of our waited-for
    children, i.e. the QEMUs): their difference over the run is what other
    work took from the 2 cores while we measured."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    busy = sum(v) - v[3] - v[4]   # all but idle and iowait, in USER_HZ ticks
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return busy / os.sysconf("SC_CLK_TCK"), ru.ru_utime + ru.ru_stime


def others_busy(seconds=1.0):
    b0, _ = cpu_seconds()
    time.sleep(seconds)
    return (cpu_seconds()[0] - b0) / seconds


def boot(a, workdir, dev, mode, biggest):
    """One boot of the guest; its console goes to workdir/console.log,
    QEMU's output to workdir/qemu.log."""
    from qemu.machine import QEMUMachine
    os.makedirs(workdir, exist_ok=True)
    run = guest.GuestRun(workdir, a.guest, device=dev, mode=mode,
                         checks="iommu-driver,groups,read", reads=a.reads, watchdog=120,
                         timeout=180, disk_size_mib=biggest + 16)
    vm = QEMUMachine(a.qemu, name="qemu", base_temp_dir=workdir, log_dir=workdir)
    log = logging.getLogger("disk-read-bench.console")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    handler = logging.FileHandler(os.path.join(workdir, "console.log"), mode="w")
    log.addHandler(handler)
    try:
        return run.run(vm, log=log)
    finally:
        log.removeHandler(handler)
        handler.close()


def main():
    ap = argparse.ArgumentParser(description="guest O_DIRECT read throughput per IOMMU")
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--reads", default="1M:1024,64K:256,4K:32",
                    help="BS:MiB,... read by dd in the guest, in this order")
    ap.add_argument("--qemu", default=os.path.join(ROOT, "build", "bin", "qemu-system-x86_64"))
    ap.add_argument("--guest", default=os.path.join(ROOT, "build", "guest"))
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "guest-bench"))
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--qemu-python", default=os.path.join(ROOT, "build", "qemu-src", "python"),
                    help="QEMU's python/ directory (qemu.machine)")
    a = ap.parse_args()
    sys.path.insert(0, a.qemu_python)

    sizes = [s.split(":")[0] for s in a.reads.split(",")]
    biggest = max(int(s.split(":")[1]) for s in a.reads.split(","))
    # The load average lags by minutes (and counts our own last run): look
    # at what the CPUs do right now instead.
    busy = others_busy()
    print(f"disk-read-bench: {len(CONFIGS)} configurations x {a.passes} pass(es), "
          f"reads {a.reads}; host busy before start: {busy:.2f} cores")
    if busy > 0.25:
        print("disk-read-bench: warning: the host is busy; absolute figures will be low "
              "and noisier, ratios less so")
    t0 = time.monotonic()
    host0, ours0 = cpu_seconds()
    shutil.rmtree(a.out, ignore_errors=True)
    table = {}   # (config, pass) -> {"bs": MBps}, plus notes
    notes = {}
    for p in range(a.passes):
        for name, dev, mode in CONFIGS:
            run = boot(a, os.path.join(a.out, f"pass{p + 1}-{name.replace(' ', '-')}"),
                       dev, mode, biggest)
            figs = {rd.get("bs"): float(rd["read-MBps"]) for rd in run.results.get("read", [])
                    if rd.get("status") == "ok"}
            table[(name, p)] = figs
            g = run.results.get("groups", {})
            if not notes.get(name, "").startswith("FAILED"):   # a failure sticks
                notes[name] = g.get("blk", "-") if dev else "-"
            if len(figs) != len(sizes):
                w = run.results.get("watchdog")
                why = (f"stuck in {w.get('stage')}" if w else
                       "timed out" if run.timed_out else f"QEMU exit {run.exit_code}")
                notes[name] = f"FAILED ({why}; see {run.workdir})"
            print(f"  pass {p + 1} {name:12} {run.wall:5.1f} s  "
                  + "  ".join(f"{bs} {figs.get(bs, float('nan')):.1f}" for bs in sizes),
                  flush=True)

    host1, ours1 = cpu_seconds()
    wall = time.monotonic() - t0
    other = max(0.0, (host1 - host0) - (ours1 - ours0)) / wall
    print(f"disk-read-bench: {wall:.0f} s; other work on the host meanwhile: "
          f"{other:.2f} cores on average (of {os.cpu_count()})")
    if a.json:
        # MB/s per pass, None where a pass has no figure; notes as below.
        with open(a.json, "w") as f:
            json.dump({"reads": a.reads, "sizes": sizes, "passes": a.passes,
                       "wall_s": wall, "host_busy_before": busy,
                       "other_cores": other,
                       "configs": [{"name": name, "device": dev, "mode": mode,
                                    "note": notes.get(name, "-"),
                                    "MBps": {bs: [table[(name, p)].get(bs)
                                                  for p in range(a.passes)]
                                             for bs in sizes}}
                                   for name, dev, mode in CONFIGS]}, f, indent=1)
    # One row per configuration; per block size the figure of every pass and
    # the mean of the per-pass ratios to "none".
    rows = []
    for name, dev, _ in CONFIGS:
        row = [name, notes.get(name, "-")]
        for bs in sizes:
            vals = [table[(name, p)].get(bs) for p in range(a.passes)]
            base = [table[("none", p)].get(bs) for p in range(a.passes)]
            row.append("/".join("n/a" if v is None else f"{v:.1f}" for v in vals))
            ratios = [v / b for v, b in zip(vals, base) if v and b]
            row.append(f"{sum(ratios) / len(ratios):.2f}x" if ratios else "n/a")
        rows.append(row)
    head = ["config", "groups"] + [h for bs in sizes for h in (f"{bs} MB/s", "ratio")]
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    print()
    for r in [head] + rows:
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    print("(MB/s = 10^6 bytes/s, one figure per pass; ratio = mean over passes of "
          "config / none in the same pass)")
    for name, _, _ in CONFIGS:
        n = notes.get(name, "")
        if n.startswith("FAILED"):
            print(f"{name}: {n}")
        elif n == "none":
            print(f"{name}: the disk is in no IOMMU group: the guest mapped nothing and "
                  "its DMA took the device's bypass path; not the cost of translation")
    return 1 if any(n.startswith("FAILED") for n in notes.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
