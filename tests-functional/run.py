#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Functional tests: boot a Linux guest behind a virtio-iommu and check,
from inside the guest and from the host, that the IOMMU is in use and that
disk and network DMA arrive intact.

One test per matrix cell, run one after the other (TCG on a 2-core machine):

    device       virtio-iommu-pci (QEMU's C device) | virtio-iommu-rs
    guest mode   iommu.strict=1 | iommu.strict=0 | iommu.passthrough=1
    boot-bypass  on (SeaBIOS) | off (qboot)

and the same guest on aarch64's virt machine (-cpu max, TCG), booted from
the device tree (-kernel, no firmware; the PCIe node's iommu-map routes
the endpoints, there is no ACPI VIOT):

    device       virtio-iommu-pci | virtio-iommu-rs
    guest mode   strict | lazy | passthrough          (boot-bypass on)
    plus         strict with boot-bypass off, for each device;
                 virtio-iommu-rs strict, boot-bypass off, the disk in
                 bypass-devices (left out of the iommu-map);
                 the disk on virtio-mmio, strict: behind each device,
                 behind virtio-iommu-rs in noncoherent-devices, and in its
                 bypass-devices (boot-bypass off)

and through UEFI (Debian's qemu-efi-aarch64, ACPI with a VIOT), strict, for
each device, and the virtio-mmio disk in noncoherent-devices behind
virtio-iommu-rs.

Every cell gets the same assertions, whatever the device; a cell whose
device cannot pass yet fails with the reasons the guest and QEMU gave,
it is never skipped.

Then the migration cells (tests-functional/migration.py): the guest, strict,
is live-migrated in the middle of its disk check from a QEMU with one
IOMMU to a QEMU with the same or the other one, and finishes its checks
there:

    source -> destination   rs:rs  c:rs  rs:c  c:c   (c = virtio-iommu-pci,
    boot-bypass             on | off                  rs = virtio-iommu-rs)

    tests-functional/run.py [--arch x86_64|arm64]... [--device D]... [--mode M]...
                            [--bypass on|off]... [--boot dt|uefi]...
                            [--migration SRC:DST]... [--only-migration |
                            --no-migration] [--qemu PATH] [--guest DIR]
                            [--qemu-arm64 PATH] [--guest-arm64 DIR] [--out DIR]

Ends with `functional: N passed, N failed`; the exit status is 1 when a
cell failed. Console logs, QEMU command lines and stderr of every cell are
kept under --out (default build/functional)."""

import argparse
import itertools
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import guestvm  # noqa: E402
import migration  # noqa: E402

DEVICES = ["virtio-iommu-pci", "virtio-iommu-rs"]
# q35 gives the virtio-iommu a 39-bit input address range (its compat
# property for virtio-iommu-pci, matching the 39-bit IOVA space of a 4-level
# x86 page table); the Rust device should report the same on q35.
EXPECTED_INPUT_BITS = 39
# granule=host (the default) on an x86 host: 4 KiB is the smallest page.
EXPECTED_MIN_PAGE = 4096
# virt gives both devices a 48-bit input range (its aw-bits default), and the
# same 4 KiB smallest page (the host's).
EXPECTED_INPUT_BITS_ARM64 = 48

ARCHES = ["x86_64", "arm64"]


def expected_input_bits(run):
    return EXPECTED_INPUT_BITS_ARM64 if run.arch == "arm64" else EXPECTED_INPUT_BITS


def expects_viot(run):
    """q35 and a UEFI boot of virt describe the endpoints in an ACPI VIOT;
    a device-tree boot of virt has no ACPI (the iommu-map does it)."""
    return run.arch == "x86_64" or run.firmware == "uefi"


def disk_translated(run):
    """Whether the disk's DMA goes through the IOMMU: not when bypass-devices
    names it, nor on a virtio-mmio transport behind the C device (it
    manages PCI devices only)."""
    return not run.bypass_disk and not (run.disk_bus == "mmio"
                                        and run.device != "virtio-iommu-rs")


def disk_label(run):
    """How the results table names a disk off PCI."""
    if run.disk_bus == "pci":
        return ""
    return " mmio-nc" if run.noncoherent_disk else " mmio"


def disk_untranslated_why(run):
    return ("in bypass-devices" if run.bypass_disk
            else f"virtio-mmio behind {run.device}, which manages PCI only")


def machine_of(run_arch, firmware):
    return "q35" if run_arch == "x86_64" else "virt" + ("+uefi" if firmware else "")


# One more cell: the disk in virtio-iommu-rs's bypass-devices (boot-bypass
# off, so that a disk the IOMMU still translated could not work): the disk
# must work in no IOMMU group, while the NIC is still translated.
BYPASS_DISK_CELL = ("virtio-iommu-rs", "strict", "off")

# Migration cells: source and destination IOMMU, by short name.
SHORT = {"c": "virtio-iommu-pci", "rs": "virtio-iommu-rs"}
LABEL = {v: k if k == "rs" else "C" for k, v in SHORT.items()}
MIGRATIONS = ["rs:rs", "c:rs", "rs:c", "c:c"]


def check_cell(run, mode):
    """Every assertion of a cell; returns the list of failure reasons."""
    why = []
    r = run.results

    if run.timed_out:
        why.append(f"timed out after {run.timeout} s (QEMU killed)")
    elif run.exit_code != 0:
        why.append(f"QEMU exited with status {run.exit_code}: {read_stderr(run)}")
    if run.qmp_error:
        why.append(run.qmp_error)
    if run.qom_type != run.device:
        why.append(f"QOM says the IOMMU is {run.qom_type!r}, not {run.device!r}")
    if "boot" not in r:
        why.append("the guest never reached /init")
        return why
    w = r.get("watchdog")
    if w:
        why.append(f"the guest was stuck in '{w.get('stage')}' for {w.get('after-s')} s; "
                   "its watchdog reset it")
    if run.faults:
        first = run.faults[0]
        ep = re.search(r"EP (\d+)", first)
        bdf = ""
        if ep:
            n = int(ep.group(1))
            bdf = f" (EP {n} = PCI {n >> 8:02x}:{(n >> 3) & 0x1f:02x}.{n & 7})"
        why.append(f"the IOMMU reported {len(run.faults)} fault(s) to the guest, first: "
                   f"'{first}'{bdf}")
    missing = [c for c in ["modules"] + run.checks.split(",") + ["done"] if c not in r]
    if missing:
        why.append("no result from the guest for: " + ", ".join(missing))
    if "iommu-driver" not in r and run.kernel_input_bits:
        why.append(f"(the kernel log shows the virtio_iommu driver did probe: input address "
                   f"{run.kernel_input_bits} bits)")
    if "modules" in r and r["modules"].get("status") != "ok":
        why.append(f"module loading failed: {r['modules']}")

    # 1. The virtio-iommu driver bound, and what it read from the device.
    d = r.get("iommu-driver")
    if not d:
        pass
    elif d["status"] != "ok":
        why.append("iommu-driver: the guest's virtio_iommu driver did not bind/probe "
                   f"(bound={d.get('bound')}, input-bits={d.get('input-bits')}, "
                   f"ACPI VIOT table={d.get('viot')}, IOMMUs in /sys/class/iommu="
                   f"{d.get('iommus')}, virtio device ids={d.get('virtio-device-ids')})")
    else:
        if d.get("input-bits") != str(expected_input_bits(run)):
            why.append(f"iommu-driver: input address width {d.get('input-bits')} bits, "
                       f"expected {expected_input_bits(run)}")
        try:
            mask = int(d.get("page-mask", ""), 16)
            if mask & -mask != EXPECTED_MIN_PAGE:
                why.append(f"iommu-driver: page mask {d['page-mask']}: smallest page "
                           f"{mask & -mask}, expected {EXPECTED_MIN_PAGE}")
        except ValueError:
            why.append(f"iommu-driver: unreadable page mask {d.get('page-mask')!r}")
        if expects_viot(run) and d.get("viot") != "yes":
            why.append("iommu-driver: no ACPI VIOT table: endpoints are not described")
        elif not expects_viot(run) and d.get("viot") != "no":
            why.append("iommu-driver: an ACPI VIOT table on a device-tree boot (no "
                       "firmware, so there should be no ACPI)")
    # Host side: the driver got as far as DRIVER_OK on the device.
    vs = run.virtio_status
    if vs is None:
        why.append("QEMU: no virtio status for the IOMMU (x-query-virtio-status "
                   "not answered or not reached)")
    elif "DRIVER_OK" not in str(vs.get("status", "")):
        why.append(f"QEMU: IOMMU virtio status is {vs.get('status')}, no DRIVER_OK")

    # 2. Both endpoints sit in IOMMU groups of the mode's default type.
    want_type = guestvm.MODES[mode][1]
    g = r.get("groups")
    if g:
        for ep in ("blk", "net"):
            got = g.get(ep, "none")
            if ep == "blk" and not disk_translated(run):
                if got != "none":
                    table = "VIOT" if expects_viot(run) else "device tree"
                    why.append(f"groups: the virtio-blk device ({g.get('blk-pci')}) is not "
                               f"behind the IOMMU ({disk_untranslated_why(run)}) but in "
                               f"IOMMU group {got}: the {table} should leave it out")
                continue
            if got == "none":
                why.append(f"groups: the virtio-{ep} device ({g.get(ep + '-pci')}) is in "
                           f"no IOMMU group (groups in the guest: {g.get('ngroups')})")
            elif got.partition(":")[2] != want_type:
                why.append(f"groups: virtio-{ep} group {got}, expected type {want_type} "
                           f"for {guestvm.MODES[mode][0]}")

    # 2b. arm64 device-tree boots: the iommu-map QEMU wrote for the same
    # command line routes the endpoints the guest saw to the IOMMU, except a
    # disk in bypass-devices.
    if g and run.arch == "arm64" and not run.firmware:
        if run.iommu_map is None:
            why.append("iommu-map: could not read the PCIe node's iommu-map "
                       "(-M virt,dumpdtb= and fdtget)")
        else:
            for ep in ("blk", "net"):
                rid = requester_id(g.get(ep + "-pci", ""))
                if rid is None:
                    continue
                mapped = any(b <= rid < b + n for b, _, _, n in run.iommu_map)
                want = not (ep == "blk" and run.bypass_disk)
                if mapped != want:
                    why.append(f"iommu-map: requester id 0x{rid:04x} (virtio-{ep}) is "
                               f"{'' if mapped else 'not '}mapped to the IOMMU "
                               f"({iommu_map_str(run.iommu_map)})")

    # 3. The disk: what the guest read back, and what the host finds in the
    # image afterwards, both equal to the host's own rendition of the pattern.
    want = guestvm.sha256(guestvm.pattern(run.seed, run.disk_mib))
    k = r.get("disk")
    if k:
        if k.get("pattern-sha256") != want:
            why.append("disk: the guest built a different pattern than the host")
        if k.get("sha256") != want:
            why.append(f"disk: read back sha256 {k.get('sha256')}, host expects {want}")
        if run.disk_sha256 != want:
            why.append(f"disk: the image holds sha256 {run.disk_sha256} after the run, "
                       f"host expects {want}")

    # 4. The network, both directions, checked against the peer's record.
    n = r.get("net")
    nbytes = run.net_kib * 1024
    tx_want = guestvm.sha256(guestvm.pattern(run.seed, (run.net_kib + 1023) // 1024)[:nbytes])
    rx_want = guestvm.sha256(guestvm.netpeer_reply(run.seed, nbytes))
    if n:
        if n["status"] != "ok":
            why.append(f"net: guest side failed (nc exit {n.get('nc-rc')}, "
                       f"received {n.get('rx-bytes')} of {nbytes} bytes)")
        if n.get("rx-sha256") != rx_want:
            why.append("net: the guest received other bytes than the host peer sent")
        if n.get("tx-sha256") != tx_want:
            why.append("net: the guest sent another pattern than expected")
    peers = [p for p in run.peer if p.get("ok")]
    if not n and not run.peer:
        pass
    elif len(peers) != 1:
        why.append(f"net: the host peer saw {len(run.peer)} connection(s), "
                   f"{len(peers)} complete")
    elif peers[0].get("received_sha256") != tx_want:
        why.append("net: the host peer received other bytes than the guest sent")

    # 5. virtio-mmio disks: how the firmware described the disk, and the
    # guest's DMA layer acting on it (swiotlb bounces for non-coherent DMA).
    c = r.get("coherency")
    if c:
        want_of = ("none" if run.firmware else
                   "dma-noncoherent" if run.noncoherent_disk else "dma-coherent")
        if c.get("of") != want_of:
            why.append(f"coherency: the disk's device-tree node says {c.get('of')}, "
                       f"expected {want_of}")
        want_iommus = "yes" if disk_translated(run) and not run.firmware else "no"
        if c.get("iommus") != want_iommus:
            why.append(f"coherency: the disk's node has iommus={c.get('iommus')}, "
                       f"expected {want_iommus}")
        hw = c.get("swiotlb-hiwater", "none")
        bounced = hw.isdigit() and int(hw) > 0
        if not hw.isdigit():
            why.append(f"coherency: no swiotlb figure from debugfs ({hw})")
        elif bounced != run.noncoherent_disk:
            why.append(f"coherency: swiotlb high-water mark {hw} slots: a "
                       f"{'non-' if run.noncoherent_disk else ''}coherent disk should "
                       f"{'' if run.noncoherent_disk else 'not '}bounce its small buffers")

        # What virtio-iommu-rs itself says of the disk's endpoint, read
        # while the guest was using it.
        if run.device == "virtio-iommu-rs" and run.endpoints is not None:
            disk = [e for e in run.endpoints
                    if e.get("bus") == "virtio-mmio" and e.get("device") == "blk0"]
            if len(disk) != 1:
                why.append(f"endpoints: no single virtio-mmio entry for blk0 in "
                           f"{run.endpoints}")
            else:
                e = disk[0]
                want_dma = "non-coherent" if run.noncoherent_disk else "coherent"
                if e.get("dma") != want_dma:
                    why.append(f"endpoints: the disk's DMA is {e.get('dma')}, "
                               f"expected {want_dma}")
                if e.get("bypass-devices") != run.bypass_disk:
                    why.append(f"endpoints: bypass-devices={e.get('bypass-devices')} "
                               "for the disk")
                attached = e.get("domain") is not None
                if attached != disk_translated(run):
                    why.append(f"endpoints: the disk's endpoint is "
                               f"{'' if attached else 'not '}attached to a domain "
                               f"({e})")

    # 6. The read figure is informative; the read itself must work.
    for rd in r.get("read", []):
        if rd["status"] != "ok":
            why.append(f"read: O_DIRECT read failed ({rd})")
    return why


def check_migration(run):
    """What a migration cell asserts on top of check_cell: the migration
    completed on both sides, the destination runs the requested IOMMU with
    its driver state, and the disk check went on there."""
    why = []
    if run.migration_error:
        why.append(f"migration: {run.migration_error}")
        for name, label in (("qemu.stderr", "source"), ("qemu-dst.stderr", "destination")):
            err = read_stderr(run, name, empty="")
            if err:
                why.append(f"{label} QEMU stderr: {err}")
    elif not run.migrated:
        why.append("no migration happened")
    for label, m in (("source", run.migration), ("destination", run.dest_migration)):
        if m and m.get("status") != "completed":
            why.append(f"query-migrate on the {label}: {m.get('status')}"
                       + (f" ({m['error-desc']})" if m.get("error-desc") else ""))
    if not run.migrated:
        return why
    if run.dest_qom_type != run.dest_device:
        why.append(f"QOM says the destination's IOMMU is {run.dest_qom_type!r}, "
                   f"not {run.dest_device!r}")
    vs = run.dest_virtio_status
    if vs is None:
        why.append("destination: no virtio status for the IOMMU after the migration")
    elif "DRIVER_OK" not in str(vs.get("status", "")):
        why.append(f"destination: IOMMU virtio status is {vs.get('status')} after the "
                   "migration, no DRIVER_OK")
    if run.src_exit_code != 0:
        why.append(f"the source QEMU exited with status {run.src_exit_code} after the "
                   f"migration: {read_stderr(run, 'qemu.stderr')}")
    # Where the guest was: the groups were seen before, the pattern was
    # written before, and the disk check ended after the migration.
    if run.side.get("groups") not in (None, migration.SOURCE):
        why.append("the groups line came after the migration (expected before)")
    if run.marker("disk", "written") != migration.SOURCE:
        why.append("the disk pattern was not written on the source")
    if run.marker("disk", "link-down") != migration.DEST:
        why.append("the guest never saw the destination's signal (link down): its "
                   "disk check did not go on after the migration")
    checks = run.checks.split(",")
    for c in checks[checks.index("disk"):] + ["done"]:
        if c in run.side and run.side[c] != migration.DEST:
            why.append(f"RESULT {c} appeared on the {run.side[c]}, expected on the "
                       "destination")
    for side, c, what, kv in run.markers:
        if (c, what) == ("disk", "verify") and kv.get("status") != "ok":
            why.append(f"disk: verify round {kv.get('round')} on the {side} read other "
                       "bytes than were written")
    return why


def requester_id(bdf):
    """'0000:00:02.0' -> 0x0010 (bus << 8 | slot << 3 | function)."""
    m = re.fullmatch(r"[0-9a-f]{4}:([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])", bdf)
    if not m:
        return None
    return int(m.group(1), 16) << 8 | int(m.group(2), 16) << 3 | int(m.group(3))


def iommu_map_str(m):
    """The requester ids an iommu-map routes to the IOMMU, as ranges."""
    return "rids " + ",".join(f"{b:04x}-{b + n - 1:04x}" for b, _, _, n in m)


def read_stderr(run, name=None, empty="(no stderr)"):
    name = name or getattr(run, "stderr_name", "qemu.stderr")
    try:
        with open(os.path.join(run.workdir, name)) as f:
            return f.read().strip().replace("\n", " | ")[:400] or empty
    except OSError:
        return empty


def summary_of(run):
    r = run.results
    bits = []
    d = r.get("iommu-driver", {})
    if d.get("status") == "ok":
        bits.append(f"input-bits={d.get('input-bits')} page-mask={d.get('page-mask')}"
                    + (f" viot={d.get('viot')}" if run.arch != "x86_64" else ""))
    g = r.get("groups")
    if g:
        bits.append(f"groups blk={g.get('blk')} net={g.get('net')}")
    if run.arch == "arm64" and run.iommu_map:
        bits.append("iommu-map " + iommu_map_str(run.iommu_map))
    for rd in r.get("read", []):
        bits.append(f"read {rd.get('bs')} {rd.get('read-MBps')} MB/s")
    return ", ".join(bits)


def migration_summary(run):
    """Informative: the migration's figures and where the disk check was."""
    m = run.migration or {}
    bits = []
    if run.migrated:
        ram = m.get("ram", {})
        bits.append(f"migration total-time={m.get('total-time')} ms "
                    f"downtime={m.get('downtime')} ms setup-time={m.get('setup-time')} ms "
                    f"ram-transferred={ram.get('transferred', 0) / 2**20:.1f} MiB, "
                    f"started {run.t_trigger:.1f} s after boot")
    rounds = {}
    for side, c, what, _ in run.markers:
        if (c, what) == ("disk", "verify"):
            rounds[side] = rounds.get(side, 0) + 1
    bits.append(f"disk verify rounds: {rounds.get(migration.SOURCE, 0)} ended on the source, "
                f"{rounds.get(migration.DEST, 0)} on the destination"
                + (", then the final one (after the link-down signal)"
                   if run.marker("disk", "link-down") else ""))
    for side in (migration.SOURCE, migration.DEST):
        names = []
        for s, line in run.sides:
            n = line.split()[1]
            if s == side and n not in names:
                names.append(n)
        bits.append(f"RESULT lines on the {side}: {' '.join(names) or '-'}")
    return bits


def arm64_cells(a):
    """The virt cells, as ("arm64", device, mode, boot-bypass, disk bypassed,
    firmware, disk), narrowed by --device, --mode and --bypass like the q35
    ones. disk: "pci", "mmio" (virtio-blk on a virtio-mmio transport) or
    "mmio-nc" (the same, in noncoherent-devices). A device-tree boot has no
    firmware doing DMA, so boot-bypass=off costs nothing there (no qboot)."""
    devs, modes = a.device or DEVICES, a.mode or list(guestvm.MODES)
    bypasses = a.bypass or ["on", "off"]
    boots = a.boot or ["dt", "uefi"]
    rs = "virtio-iommu-rs" in devs
    cells = []
    if "dt" in boots and "on" in bypasses:
        cells += [("arm64", d, m, "on", False, None, "pci") for d in devs for m in modes]
    if "dt" in boots and "on" in bypasses and "strict" in modes:
        # virtio-mmio endpoints: behind virtio-iommu-rs, coherent and not;
        # the C device manages PCI only, so its virtio-mmio disk is direct.
        cells += [("arm64", d, "strict", "on", False, None, "mmio") for d in devs]
        if rs:
            cells.append(("arm64", "virtio-iommu-rs", "strict", "on", False, None, "mmio-nc"))
    if "dt" in boots and "off" in bypasses and "strict" in modes:
        cells += [("arm64", d, "strict", "off", False, None, "pci") for d in devs]
        if rs:
            cells.append(("arm64", "virtio-iommu-rs", "strict", "off", True, None, "pci"))
            cells.append(("arm64", "virtio-iommu-rs", "strict", "off", True, None, "mmio"))
    if "uefi" in boots and "on" in bypasses and "strict" in modes:
        cells += [("arm64", d, "strict", "on", False, "uefi", "pci") for d in devs]
        if rs:
            cells.append(("arm64", "virtio-iommu-rs", "strict", "on", False, "uefi",
                          "mmio-nc"))
    return cells


def run_migration_cell(a, workdir, src, dst, bypass):
    run = migration.MigrationRun(workdir, src, dst, mode="strict",
                                 boot_bypass=(bypass == "on"), qemu=a.qemu,
                                 guest=a.guest, timeout=a.timeout + 30).run()
    why = check_migration(run) + check_cell(run, "strict")
    with open(os.path.join(workdir, "results.txt"), "w") as f:
        for side, line in run.sides:
            f.write(f"{side:11} {line}\n")
        for b in migration_summary(run):
            f.write(b + "\n")
    return run, why


def main():
    ap = argparse.ArgumentParser(description="virtio-iommu functional tests (TCG guest)")
    ap.add_argument("--arch", action="append", choices=ARCHES,
                    help="guest architecture (repeatable; default: both): x86_64 on q35 "
                         "(and the migration cells), arm64 on virt")
    ap.add_argument("--device", action="append", choices=DEVICES,
                    help="device under test (repeatable; default: both)")
    ap.add_argument("--mode", action="append", choices=list(guestvm.MODES),
                    help="guest IOMMU mode (repeatable; default: all)")
    ap.add_argument("--bypass", action="append", choices=["on", "off"],
                    help="boot-bypass (repeatable; default: both)")
    ap.add_argument("--migration", action="append", choices=MIGRATIONS, metavar="SRC:DST",
                    help="migration cell, source:destination IOMMU, c = virtio-iommu-pci, "
                         "rs = virtio-iommu-rs, run for each --bypass value (repeatable; "
                         "default: all in the whole matrix, none when --device, --mode or "
                         f"--bypass narrows it); one of {', '.join(MIGRATIONS)}")
    only = ap.add_mutually_exclusive_group()
    only.add_argument("--only-migration", action="store_true",
                      help="run only the migration cells (those of --migration, or every "
                           "pair of the --device selection)")
    only.add_argument("--no-migration", action="store_true",
                      help="run no migration cell")
    ap.add_argument("--qemu", default=guestvm.DEFAULT_QEMU)
    ap.add_argument("--guest", default=guestvm.DEFAULT_GUEST)
    ap.add_argument("--boot", action="append", choices=["dt", "uefi"],
                    help="arm64 cells: boot from the device tree (-kernel, no firmware) "
                         "or through UEFI and ACPI (repeatable; default: both)")
    ap.add_argument("--qemu-arm64", default=guestvm.DEFAULT_QEMU_ARM64)
    ap.add_argument("--guest-arm64", default=guestvm.DEFAULT_GUEST_ARM64)
    ap.add_argument("--out", default=os.path.join(guestvm.ROOT, "build", "functional"))
    ap.add_argument("--timeout", type=int, default=90,
                    help="per cell, seconds (the guest's own watchdog fires at 30 s after "
                         "/init); migration cells get 30 s more and a 60 s watchdog")
    a = ap.parse_args()
    arches = a.arch or ARCHES
    x86 = "x86_64" in arches

    if x86:
        for f in ("vmlinuz", "initramfs.gz"):
            if not os.path.exists(os.path.join(a.guest, f)):
                sys.exit(f"functional: {a.guest}/{f} missing: run scripts/guest/build-image.sh")
        if not os.access(a.qemu, os.X_OK):
            sys.exit(f"functional: no emulator at {a.qemu} (make build)")
        if "off" in (a.bypass or ["off"]) and not os.path.exists(guestvm.QBOOT):
            sys.exit(f"functional: boot-bypass=off cells need {guestvm.QBOOT} "
                     "(qemu-system-data)")

    cells = []
    if x86:
        cells = [c + (False,) for c in itertools.product(
            a.device or DEVICES, a.mode or list(guestvm.MODES), a.bypass or ["on", "off"])]
        dev, mode, bypass = BYPASS_DISK_CELL
        if dev in (a.device or DEVICES) and mode in (a.mode or guestvm.MODES) \
                and bypass in (a.bypass or ["off"]):
            cells.append(BYPASS_DISK_CELL + (True,))
    if "arm64" in arches:
        arm = arm64_cells(a)
        if arm:
            for f in ("Image", "initramfs.gz"):
                if not os.path.exists(os.path.join(a.guest_arm64, f)):
                    sys.exit(f"functional: {a.guest_arm64}/{f} missing: run "
                             "make guest-image-arm64")
            if not os.access(a.qemu_arm64, os.X_OK):
                sys.exit(f"functional: no emulator at {a.qemu_arm64} (make build)")
            if any(c[5] for c in arm) and not os.path.exists(guestvm.EFI_ARM64):
                sys.exit(f"functional: the UEFI cells need {guestvm.EFI_ARM64} "
                         "(qemu-efi-aarch64)")
        cells += arm
    # Migration cells: in the whole matrix (no option narrowing it), when
    # named by --migration, or all those --device allows with --only-migration.
    # Narrowing the matrix by --device/--mode/--bypass alone leaves them out.
    # The migration cells are q35's: none when --arch leaves x86_64 out.
    if a.only_migration:
        cells = []
    if not x86:
        pairs = []
    elif a.migration:
        pairs = a.migration
    elif a.only_migration or not (a.no_migration or a.device or a.mode or a.bypass):
        pairs = [p for p in MIGRATIONS
                 if all(SHORT[d] in (a.device or DEVICES) for d in p.split(":"))]
    else:
        pairs = []
    for p, bypass in itertools.product(pairs, a.bypass or ["on", "off"]):
        src, dst = (SHORT[d] for d in p.split(":"))
        cells.append(("migrate", src, dst, bypass))
    shutil.rmtree(a.out, ignore_errors=True)
    os.makedirs(a.out)
    passed, failed, rows = 0, 0, []
    for i, cell in enumerate(cells, 1):
        if cell[0] == "migrate":
            _, src, dst, bypass = cell
            name = f"migrate-{src}-to-{dst}-strict-bypass-{bypass}"
            print(f"[{i:2}/{len(cells)}] migrate {src} -> {dst} strict boot-bypass={bypass} "
                  "... ", end="", flush=True)
            run, why = run_migration_cell(a, os.path.join(a.out, name), src, dst, bypass)
            if why:
                failed += 1
                print(f"FAIL  {run.wall:5.1f} s")
                for w in why:
                    print(f"        - {w}")
                print(f"        (logs: {os.path.relpath(run.workdir)}/guest.log, "
                      "qemu.stderr, qemu-dst.stderr, migration.json)")
            else:
                passed += 1
                print(f"PASS  {run.wall:5.1f} s  {summary_of(run)}")
            for b in migration_summary(run):
                print(f"        {b}")
            rows.append(("q35", f"migrate {LABEL[src]}->{LABEL[dst]}", "strict", bypass,
                         "PASS" if not why else "FAIL", run.wall, ""))
            sys.stdout.flush()
            continue
        if cell[0] == "arm64":
            _, dev, mode, bypass, bypass_disk, firmware, disk = cell
            name = (f"arm64-{dev}-{mode}-bypass-{bypass}" + ("-uefi" if firmware else "")
                    + ("-disk-bypassed" if bypass_disk else "")
                    + ("" if disk == "pci" else f"-disk-{disk}"))
            extra = (" bypass-devices=[disk]" if bypass_disk else "") + {
                "pci": "", "mmio": " disk on virtio-mmio",
                "mmio-nc": " disk on virtio-mmio, noncoherent-devices=[disk]"}[disk]
            boot = "UEFI/ACPI" if firmware else "DT"
            print(f"[{i:2}/{len(cells)}] arm64 virt {boot:9} {dev:16} {mode:11} "
                  f"boot-bypass={bypass:3}{extra} ... ", end="", flush=True)
            run = guestvm.GuestRun(os.path.join(a.out, name), device=dev, mode=mode,
                                   boot_bypass=(bypass == "on"), qemu=a.qemu_arm64,
                                   guest=a.guest_arm64, timeout=a.timeout,
                                   bypass_disk=bypass_disk, arch="arm64",
                                   firmware=firmware,
                                   disk_bus="pci" if disk == "pci" else "mmio",
                                   noncoherent_disk=(disk == "mmio-nc"))
            if disk != "pci":
                run.checks += ",coherency"
        else:
            dev, mode, bypass, bypass_disk = cell
            name = f"{dev}-{mode}-bypass-{bypass}" + ("-disk-bypassed" if bypass_disk else "")
            extra = " bypass-devices=[disk]" if bypass_disk else ""
            print(f"[{i:2}/{len(cells)}] {dev:16} {mode:11} boot-bypass={bypass:3}{extra} ... ",
                  end="", flush=True)
            run = guestvm.GuestRun(os.path.join(a.out, name), device=dev, mode=mode,
                                   boot_bypass=(bypass == "on"), qemu=a.qemu,
                                   guest=a.guest, timeout=a.timeout,
                                   bypass_disk=bypass_disk)
        run = run.run()
        why = check_cell(run, mode)
        if why:
            failed += 1
            print(f"FAIL  {run.wall:5.1f} s")
            for w in why:
                print(f"        - {w}")
            print(f"        (log: {os.path.relpath(run.workdir)}/console.log)")
        else:
            passed += 1
            print(f"PASS  {run.wall:5.1f} s  {summary_of(run)}")
        rows.append((machine_of(run.arch, run.firmware), dev, mode,
                     bypass + ("+disk" if bypass_disk else "") + disk_label(run),
                     "PASS" if not why else "FAIL", run.wall, summary_of(run)))
        sys.stdout.flush()

    print()
    print(f"{'machine':9} {'device':16} {'mode':11} {'bypass':16} {'result':6} "
          f"{'boot-to-pass':>12}")
    for machine, dev, mode, bypass, res, wall, _ in rows:
        print(f"{machine:9} {dev:16} {mode:11} {bypass:16} {res:6} {wall:10.1f} s")
    print(f"functional: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
