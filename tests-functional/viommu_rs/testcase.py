# SPDX-License-Identifier: GPL-2.0-or-later
"""The base class of the virtio-iommu-rs functional tests.

A test method is one cell of the guest matrix: boot_cell() boots the guest
behind one IOMMU (guest.py) on self.vm, migration_cell() moves it between
two QEMUs (migration.py) on self.get_vm(name="source") and
get_vm(name="destination"); both then assert everything checks.py lists
and fail with every reason at once.

The guest (kernel and initramfs) is not an Asset: scripts/guest/build-image.sh
builds it locally from pinned Debian packages and its own /init, so its
hash is not stable across builds and there is nothing to download. It is
taken from $VIOMMU_RS_GUEST (x86_64) or $VIOMMU_RS_GUEST_ARM64 (aarch64),
by default from the virtio-iommu-rs checkout these files live in
(build/guest, build/guest-arm64); without it the tests skip.

Besides QEMU's logs (base.log, console.log, default.log or source.log and
destination.log), each cell's log directory keeps netpeer.log, cell.json
(its result and summary, read by tests-functional/summary.py),
iommu-map.txt (arm64 device-tree cells), migration.json and results.txt
(migration cells)."""

import json
import logging
import os
import sys

from qemu_test import LinuxKernelTest, wait_for_console_pattern, which

from . import checks
from .guest import ARCHES, EFI_ARM64, INIT_MESSAGE, QBOOT, GuestRun
from .migration import MigrationRun

# The virtio-iommu-rs checkout: this file is tests-functional/viommu_rs/.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

# Per guest architecture: QEMU's target, the variable naming the guest
# image directory, its default under the checkout, and how to build it.
GUESTS = {
    "x86_64": ("x86_64", "VIOMMU_RS_GUEST", "guest", "make guest-image"),
    "arm64": ("aarch64", "VIOMMU_RS_GUEST_ARM64", "guest-arm64", "make guest-image-arm64"),
}

# The devices by the short names the test methods use.
DEVICES = {"c": "virtio-iommu-pci", "rs": "virtio-iommu-rs"}


class VirtioIommuRsTest(LinuxKernelTest):
    """A Linux guest behind virtio-iommu-rs or virtio-iommu-pci (TCG)."""

    GUEST_ARCH = "x86_64"
    # Per cell, in seconds; the guest's own watchdog resets it 30 s after
    # /init started. A migration cell gets 30 s more and a 60 s watchdog.
    CELL_TIMEOUT = 90

    def setUp(self):
        super().setUp()
        try:
            os.unlink(self.log_file("cell.json"))
        except FileNotFoundError:
            pass
        target, env, sub, make = GUESTS[self.GUEST_ARCH]
        if self.arch != target:
            self.skipTest(f"a {target} test, QEMU is {self.qemu_bin}")
        self.require_accelerator("tcg")
        self.require_netdev("user")
        self.set_machine(ARCHES[self.GUEST_ARCH]["machine"])
        self.guest_dir = os.environ.get(env) or os.path.join(ROOT, "build", sub)
        for f in ("vmlinuz", "initramfs.gz"):
            if not os.path.exists(os.path.join(self.guest_dir, f)):
                self.skipTest(f"no guest image in {self.guest_dir} (${env}): "
                              f"build it with {make}")

    def require_file(self, path, package):
        if not os.path.exists(path):
            self.skipTest(f"needs {path} ({package})")

    def wait_boot(self, vm):
        """The kernel's boot, up to its start of /init (GuestRun.run)."""
        return wait_for_console_pattern(self, INIT_MESSAGE,
                                        failure_message="Kernel panic - not syncing", vm=vm)

    # -- cells ---------------------------------------------------------------

    def boot_cell(self, device, mode="strict", bypass=True, bypass_disk=False,
                  firmware=None, disk="pci"):
        """One boot behind DEVICES[device] in guest IOMMU mode `mode`
        (guest.MODES), boot-bypass on or off; bypass_disk: the disk in the
        IOMMU's bypass-devices; arm64: firmware="uefi" boots through UEFI
        and ACPI instead of the device tree, disk="mmio" puts the disk on
        a virtio-mmio transport, "mmio-nc" also in noncoherent-devices."""
        dev = DEVICES[device]
        self.require_device(dev)
        if self.GUEST_ARCH == "x86_64" and not bypass:
            self.require_file(QBOOT, "qemu-system-data")
        if firmware == "uefi":
            self.require_file(EFI_ARM64, "qemu-efi-aarch64")
        elif self.GUEST_ARCH == "arm64" and not which("fdtget"):
            self.skipTest("needs fdtget (device-tree-compiler) to read the iommu-map")
        run = GuestRun(self.scratch_file(), self.guest_dir, device=dev, mode=mode,
                       boot_bypass=bypass, timeout=self.CELL_TIMEOUT,
                       bypass_disk=bypass_disk, arch=self.GUEST_ARCH, firmware=firmware,
                       disk_bus="pci" if disk == "pci" else "mmio",
                       noncoherent_disk=(disk == "mmio-nc"), logdir=self.log_file())
        if disk != "pci":
            run.checks += ",coherency"
        run.run(self.vm, log=logging.getLogger("console"), wait_boot=self.wait_boot)
        why = checks.check_cell(run, mode)
        self.report(run, why, dev, mode, [])

    def migration_cell(self, src, dst, bypass):
        """The guest, strict, migrated from a QEMU with DEVICES[src] to one
        with DEVICES[dst] in the middle of its disk check."""
        for d in (src, dst):
            self.require_device(DEVICES[d])
        if not bypass:
            self.require_file(QBOOT, "qemu-system-data")
        run = MigrationRun(self.scratch_file(), self.guest_dir, DEVICES[src], DEVICES[dst],
                           boot_bypass=bypass, timeout=self.CELL_TIMEOUT + 30,
                           logdir=self.log_file())
        uri = "unix:" + os.path.join(self.socket_dir().name, "migrate.sock")
        run.run(self.get_vm(name="source"), self.get_vm(name="destination"), uri,
                log=logging.getLogger("console"), wait_boot=self.wait_boot)
        why = checks.check_migration(run) + checks.check_cell(run, "strict")
        details = checks.migration_summary(run)
        with open(self.log_file("results.txt"), "w") as f:
            for side, line in run.sides:
                f.write(f"{side:11} {line}\n")
            for b in details:
                f.write(b + "\n")
        self.report(run, why, f"migrate {checks.LABEL[run.device]}->"
                    f"{checks.LABEL[run.dest_device]}", "strict", details)

    # -- results ---------------------------------------------------------------

    def report(self, run, why, device, mode, details):
        """Log the cell's outcome, keep it in cell.json, fail with every
        reason."""
        summary = checks.summary_of(run)
        cell = {"machine": checks.machine_of(run), "device": device, "mode": mode,
                "bypass": checks.bypass_label(run), "result": "FAIL" if why else "PASS",
                "wall": run.wall, "summary": summary, "details": details, "why": why}
        with open(self.log_file("cell.json"), "w") as f:
            json.dump(cell, f, indent=1)
        head = f"{cell['result']} {run.wall or 0:5.1f} s"
        for line in [f"{head}  {summary}"] + details + [f"- {w}" for w in why]:
            self.log.info(line)
        # A line per cell on stderr, as the TAP runner leaves stdout to TAP.
        print(f"# {self.id()}: {head}  {summary}", file=sys.stderr)
        if why:
            self.fail("\n".join(["the cell failed:"] + [f"  - {w}" for w in why]
                                + [f"(logs: {self.log_file()})"]))
