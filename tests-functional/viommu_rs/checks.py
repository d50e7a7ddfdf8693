# SPDX-License-Identifier: GPL-2.0-or-later
"""What a functional-test cell asserts, and how it is summed up.

check_cell(run, mode) lists every reason a GuestRun (guest.py) failed, the
same assertions for both devices; check_migration(run) adds what a
MigrationRun (migration.py) asserts. An empty list is a pass. The
summaries are informative (the test logs them and keeps them in cell.json)."""

import re

from . import guest
from . import migration

# q35 gives the virtio-iommu a 39-bit input address range (its compat
# property for virtio-iommu-pci, matching the 39-bit IOVA space of a 4-level
# x86 page table); the Rust device should report the same on q35.
EXPECTED_INPUT_BITS = 39
# granule=host (the default) on an x86 host: 4 KiB is the smallest page.
EXPECTED_MIN_PAGE = 4096
# virt gives both devices a 48-bit input range (its aw-bits default), and the
# same 4 KiB smallest page (the host's).
EXPECTED_INPUT_BITS_ARM64 = 48


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


def bypass_label(run):
    """The results table's bypass column: boot-bypass, then a disk in
    bypass-devices and a disk off PCI."""
    return (("on" if run.boot_bypass else "off") + ("+disk" if run.bypass_disk else "")
            + disk_label(run))


def disk_untranslated_why(run):
    return ("in bypass-devices" if run.bypass_disk
            else f"virtio-mmio behind {run.device}, which manages PCI only")


def machine_of(run):
    return "q35" if run.arch == "x86_64" else "virt" + ("+uefi" if run.firmware else "")


# How the results table names the devices of a migration cell.
LABEL = {"virtio-iommu-pci": "C", "virtio-iommu-rs": "rs"}


def check_cell(run, mode):
    """Every assertion of a cell; returns the list of failure reasons."""
    why = []
    r = run.results

    if run.timed_out:
        why.append(f"timed out after {run.timeout} s (QEMU killed)")
    elif run.exit_code != 0:
        why.append(f"QEMU exited with status {run.exit_code}: {read_stderr(run.qemu_log)}")
    if run.qmp_error:
        why.append(run.qmp_error)
    if run.qom_type != run.device:
        why.append(f"QOM says the IOMMU is {run.qom_type!r}, not {run.device!r}")
    if "boot" not in r:
        why.append("the guest never reached /init"
                   + (f" ({run.boot_error})" if run.boot_error else ""))
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
    want_type = guest.MODES[mode][1]
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
                           f"for {guest.MODES[mode][0]}")

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
    want = guest.sha256(guest.pattern(run.seed, run.disk_mib))
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
    tx_want = guest.sha256(guest.pattern(run.seed, (run.net_kib + 1023) // 1024)[:nbytes])
    rx_want = guest.sha256(guest.netpeer_reply(run.seed, nbytes))
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
        for text, label in ((run.src_qemu_log, "source"), (run.qemu_log, "destination")):
            err = read_stderr(text, empty="")
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
                   f"migration: {read_stderr(run.src_qemu_log)}")
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


def read_stderr(text, empty="(no stderr)"):
    """QEMU's output (QEMUMachine's log of its stdout and stderr), on one line."""
    return (text or "").strip().replace("\n", " | ")[:400] or empty


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
