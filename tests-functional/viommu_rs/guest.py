# SPDX-License-Identifier: GPL-2.0-or-later
"""The functional-test guest: its QEMU command line, what it prints, one boot.

A `GuestRun` is one boot of the guest scripts/guest/build-image.sh builds
(a Debian kernel and the project's initramfs) on a QEMUMachine (QEMU's
python/qemu/machine): q35 under TCG, or with arch="arm64" aarch64's virt
machine, booted from the device tree or through UEFI; optionally behind a
virtio-iommu (the C `virtio-iommu-pci` or the Rust `virtio-iommu-rs`), with
a fresh scratch virtio-blk disk and a virtio-net NIC on a restricted slirp
network whose only peer is netpeer.py. The guest's /init prints
`RESULT <check> ok|fail key=value...` lines on the serial console and
powers off; a GuestRun parses them and asks QEMU over QMP which device is
under test and what its driver negotiated. checks.py decides whether all
that is right.

The functional tests (testcase.py) run it on the test's own QEMUMachine;
scripts/guest/disk-read-bench.py on one of its own."""

import hashlib
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.realpath(__file__))
# With -bios: qboot loads the kernel through fw_cfg and does no DMA itself.
QBOOT = "/usr/share/qemu/qboot.rom"
# UEFI for the virt machine, from Debian's qemu-efi-aarch64 package. Given
# -kernel/-initrd/-append, its loader boots the kernel (EFI stub) with the
# machine's ACPI tables, VIOT included.
EFI_ARM64 = "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd"
# Debian's firmware directories (SeaBIOS, option ROMs): a QEMU run from its
# build tree does not look in configure's --firmwarepath, and Debian's
# source tarball ships no binary firmware, so q35 would find no BIOS.
FIRMWARE_DIRS_X86 = ["/usr/share/seabios", "/usr/lib/ipxe/qemu", "/usr/share/qemu"]

# The machine, CPU and console per guest architecture (Debian's names).
ARCHES = {
    "x86_64": {"machine": "q35", "cpu": None, "console": "ttyS0"},
    "arm64": {"machine": "virt", "cpu": "max", "console": "ttyAMA0"},
}

# Where the guest reaches the host peer (slirp guestfwd; not a host port).
NETPEER = "10.0.2.100:1234"

# What each guest IOMMU mode is called on the kernel command line, and the
# default domain type the kernel then gives every group
# (/sys/kernel/iommu_groups/N/type).
MODES = {
    "strict": ("iommu.strict=1", "DMA"),
    "lazy": ("iommu.strict=0", "DMA-FQ"),
    "passthrough": ("iommu.passthrough=1", "identity"),
}

RESULT_RE = re.compile(r"^RESULT (\S+)(?: (ok|fail))?(.*)$")
# The guest's progress markers: "CHECK <check> <what> key=value...".
MARKER_RE = re.compile(r"^CHECK (\S+) (\S+)(?: (ok|fail))?(.*)$")
# The guest driver's report of an event-queue fault (DMA the IOMMU refused).
FAULT_RE = re.compile(r"virtio_iommu \S+: (.*fault.*)$")
PROBE_RE = re.compile(r"virtio_iommu \S+: input address: (\d+) bits")
KV_RE = re.compile(r'([\w-]+)=("([^"]*)"|\S*)')

# The kernel's message as it starts /init (what the tests wait for first).
INIT_MESSAGE = "Run /init as init process"


def pattern(seed, mib):
    """The bytes the guest's make_pattern writes: 32-byte lines
    "<seed, 16 chars>:<index, 14 digits>\\n" (see scripts/guest/init)."""
    s = seed[:16].encode()
    return b"".join(b"%s:%014d\n" % (s, i) for i in range(mib * 1024 * 1024 // 32))


def netpeer_reply(seed, n):
    from . import netpeer
    return netpeer.reply_bytes(seed, n)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def qemu_escape(s):
    # QemuOpts splits on ',' and takes ',,' for a literal comma.
    return s.replace(",", ",,")


def parse_kv(rest):
    return {k: (q if v.startswith('"') else v) for k, v, q in KV_RE.findall(rest)}


class Console:
    """Lines from a QEMUMachine's console socket (vm.set_console()), read
    against a deadline. Each complete line is logged to `log` (with
    `prefix`) and handed to `on_line`."""

    def __init__(self, vm, on_line, log=None, prefix=""):
        self.vm = vm
        self.on_line = on_line
        self.log = log
        self.prefix = prefix
        self.partial = b""
        self.eof = False

    def feed(self, data, logged=False):
        """Take `data` read from the console; `logged`: someone else (the
        test's wait_for_console_pattern) has logged it already."""
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        for raw in lines:
            self._line(raw, logged)
        if logged and self.partial:
            # The rest of this line, when it comes, is logged on its own.
            self._line(self.partial, logged)
            self.partial = b""

    def _line(self, raw, logged=False):
        line = raw.decode("utf-8", "replace").rstrip("\r")
        if not line.strip():
            return
        if self.log and not logged:
            self.log.debug(self.prefix + line)
        self.on_line(line)

    def close(self):
        """The console ended: hand over an unfinished last line."""
        self.eof = True
        if self.partial:
            self._line(self.partial)
            self.partial = b""

    def read(self, until=None, deadline=None):
        """Read until `until()` holds ("done"), the console ends ("eof") or
        `deadline` (time.monotonic()) passes ("timeout")."""
        while True:
            if until and until():
                return "done"
            if self.eof:
                return "eof"
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            try:
                sock = self.vm.console_socket
                sock.settimeout(min(left, 1.0))
                data = sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                data = b""
            if not data:
                self.close()
            else:
                self.feed(data)


class GuestRun:
    """One boot. `device` is None (no IOMMU) or a -device driver name.
    Scratch files (the disk image) go to `workdir`, files worth keeping
    (netpeer.log, iommu-map.txt) to `logdir`."""

    def __init__(self, workdir, guest, device=None, mode="strict", boot_bypass=True,
                 checks="iommu-driver,groups,disk,net,read", reads="1M:64", disk_mib=4,
                 net_kib=1024, timeout=90, seed=None, disk_size_mib=256, watchdog=30,
                 bypass_disk=False, arch="x86_64", firmware=None, disk_bus="pci",
                 noncoherent_disk=False, logdir=None):
        self.workdir = workdir
        self.logdir = logdir or workdir
        # The directory with the guest's vmlinuz and initramfs.gz.
        self.guest = guest
        # The guest architecture (ARCHES) and, for arm64, firmware="uefi" to
        # boot through UEFI and ACPI instead of the device tree (no firmware).
        self.arch = arch
        self.firmware = firmware
        # List the virtio-blk disk in the IOMMU's bypass-devices (by id).
        self.bypass_disk = bypass_disk
        # arm64: the disk on a virtio-mmio transport ("mmio") instead of PCI,
        # optionally in the IOMMU's noncoherent-devices.
        self.disk_bus = disk_bus
        self.noncoherent_disk = noncoherent_disk
        self.device = device
        self.mode = mode
        self.boot_bypass = boot_bypass
        self.checks = checks
        self.reads = reads
        self.disk_mib = disk_mib
        self.net_kib = net_kib
        self.timeout = timeout
        self.seed = seed or os.urandom(8).hex()
        self.disk_size_mib = disk_size_mib
        self.watchdog = watchdog
        self.disk = os.path.join(workdir, "scratch.raw")
        # Filled by run():
        self.results = {}      # check name -> {"status": ok|fail|None, key: value}
        self.result_lines = []
        self.markers = []      # (side, check, what, {key: value}) of CHECK lines
        self.sides = []        # (side, RESULT line), in order
        self.side = {}         # check -> side of its (last) RESULT line
        self._side = None      # who prints now (migration.py: source, destination)
        self.wall = None       # seconds from QEMU start to its exit
        self.exit_code = None
        self.timed_out = False
        self.boot_error = None  # why the kernel never started /init
        self.qom_type = None
        self.virtio_status = None
        self.endpoints = None  # virtio-iommu-rs's `endpoints` property
        self.qmp_error = None
        self.qemu_log = ""     # QEMU's stdout and stderr
        self.disk_sha256 = None
        self.peer = []         # netpeer.py's records
        self.faults = []       # fault reports the guest driver logged
        self.kernel_input_bits = None  # from the driver's probe message
        self.iommu_map = None  # arm64 DT boots: the PCIe node's iommu-map

    # -- command line -------------------------------------------------------

    def kernel_command_line(self):
        parts = [f"console={ARCHES[self.arch]['console']}", "panic=-1", f"seed={self.seed}",
                 f"check={self.checks}", f"read={self.reads}",
                 f"disk_mib={self.disk_mib}", f"net_kib={self.net_kib}",
                 f"netpeer={NETPEER}", f"watchdog={self.watchdog}"]
        if self.device:
            parts.insert(2, MODES[self.mode][0])
        if self.firmware == "uefi":
            # UEFI on virt installs QEMU's ACPI tables and no device tree
            # (the EFI stub makes an empty one), so the kernel takes ACPI
            # anyway; acpi=force makes that explicit: no fallback to a DT.
            parts.insert(2, "acpi=force")
        return " ".join(parts)

    @property
    def machine(self):
        return ARCHES[self.arch]["machine"]

    def qemu_args(self, device=None, incoming=False):
        """The QEMU arguments after the binary and -machine, without a
        console or QMP (QEMUMachine adds those). A migration destination
        gets the same ones except for the IOMMU driver (`device`, default
        self.device) and `-incoming defer`."""
        device = device or self.device
        peer_cmd = " ".join(shlex.quote(a) for a in (
            sys.executable, os.path.join(HERE, "netpeer.py"),
            os.path.join(self.logdir, "netpeer.log"), self.seed))
        args = []
        if ARCHES[self.arch]["cpu"]:
            args += ["-cpu", ARCHES[self.arch]["cpu"]]
        if self.arch == "x86_64":
            for d in FIRMWARE_DIRS_X86:
                if os.path.isdir(d):
                    args += ["-L", d]
        args += ["-accel", "tcg", "-m", "512", "-smp", "1",
                 "-nodefaults", "-display", "none", "-no-reboot",
                 "-kernel", os.path.join(self.guest, "vmlinuz"),
                 "-initrd", os.path.join(self.guest, "initramfs.gz"),
                 "-append", self.kernel_command_line()]
        if incoming:
            args += ["-incoming", "defer"]
        if self.firmware == "uefi":
            args += ["-bios", EFI_ARM64]
        elif self.arch != "x86_64":
            # A device-tree boot: QEMU loads the kernel, no firmware does DMA.
            pass
        elif not self.boot_bypass:
            # With boot-bypass=off the IOMMU blocks DMA until the guest
            # driver configures it; SeaBIOS's own disk DMA then times out
            # (~60 s). qboot does no DMA.
            args += ["-bios", QBOOT]
        if device and (self.bypass_disk or self.noncoherent_disk):
            # An array property needs the JSON form of -device.
            props = {"driver": device, "id": "iommu", "boot-bypass": self.boot_bypass}
            if self.bypass_disk:
                props["bypass-devices"] = ["blk0"]
            if self.noncoherent_disk:
                props["noncoherent-devices"] = ["blk0"]
            args += ["-device", json.dumps(props)]
        elif device:
            args += ["-device", f"{device},id=iommu,"
                     f"boot-bypass={'on' if self.boot_bypass else 'off'}"]
        # iommu_platform=on makes the devices' DMA go through the IOMMU
        # (VIRTIO_F_ACCESS_PLATFORM); q35 needs disable-legacy=on with it
        # (virt gets the same devices).
        args += ["-drive", f"file={qemu_escape(self.disk)},format=raw,if=none,id=scratch"]
        if self.disk_bus == "mmio":
            # A modern transport (a legacy one cannot negotiate
            # VIRTIO_F_ACCESS_PLATFORM); JSON, so that QEMU creates the disk
            # after the IOMMU, as the IOMMU must come first.
            args += ["-global", "virtio-mmio.force-legacy=false",
                     "-device", json.dumps({"driver": "virtio-blk-device", "id": "blk0",
                                            "drive": "scratch", "iommu_platform": True})]
        else:
            args += ["-device", "virtio-blk-pci,id=blk0,drive=scratch,iommu_platform=on,"
                                "disable-legacy=on"]
        args += [
            # restrict=on: no route out of the VM; the guestfwd -cmd is the
            # only thing the guest can talk to.
            "-netdev", f"user,id=net0,restrict=on,guestfwd=tcp:{NETPEER}-cmd:"
                       + qemu_escape(peer_cmd),
            # romfile=: the guest boots from -kernel, so no iPXE ROM.
            "-device", "virtio-net-pci,netdev=net0,iommu_platform=on,"
                       "disable-legacy=on,romfile="]
        return args

    def prepare(self, vm, **kw):
        """Give the QEMUMachine `vm` this guest's machine and arguments and
        a console socket (kw: as qemu_args)."""
        vm.set_machine(self.machine)
        vm.add_args(*self.qemu_args(**kw))
        vm.set_console()

    def fresh_disk(self):
        """A fresh, sparse, all-zero disk: nothing from an earlier run can
        make this one pass, and no two runs share an image."""
        os.makedirs(self.workdir, exist_ok=True)
        os.makedirs(self.logdir, exist_ok=True)
        for f in ("netpeer.log", "iommu-map.txt"):
            try:
                os.unlink(os.path.join(self.logdir, f))
            except FileNotFoundError:
                pass
        with open(self.disk, "wb") as f:
            f.truncate(self.disk_size_mib * 1024 * 1024)

    def collect(self):
        """After QEMU exited: the host peer's records and what the guest
        left on the disk."""
        peer_log = os.path.join(self.logdir, "netpeer.log")
        if os.path.exists(peer_log):
            with open(peer_log) as f:
                self.peer = [json.loads(line) for line in f if line.strip()]
        with open(self.disk, "rb") as f:
            self.disk_sha256 = sha256(f.read(self.disk_mib * 1024 * 1024))
        os.unlink(self.disk)

    # -- running -------------------------------------------------------------

    def _query_point(self):
        """When to ask QEMU what the guest driver negotiated: once the guest
        has looked at its groups. By then the driver has probed, and the
        disk and network checks still keep the guest busy for seconds, far
        from the reset of the power-off. A stuck guest's watchdog waits 2 s
        before resetting for the same reason."""
        r = self.results
        return ("groups" in r or "watchdog" in r
                or "iommu-driver" in r and "groups" not in self.checks)

    def query(self, vm, label=""):
        """x-query-virtio-status of the IOMMU and, behind virtio-iommu-rs,
        its `endpoints` property, while the guest uses it."""
        try:
            self.virtio_status = vm.cmd("x-query-virtio-status",
                                        path="/machine/peripheral/iommu/virtio-backend")
        except Exception as e:  # QMP errors and a lost connection alike
            self.qmp_error = f"{label}x-query-virtio-status: {e}"
        if self.device == "virtio-iommu-rs":
            try:
                self.endpoints = vm.cmd("qom-get", path="/machine/peripheral/iommu",
                                        property="endpoints")
            except Exception as e:
                self.qmp_error = f"{label}qom-get endpoints: {e}"

    @staticmethod
    def qom_type_of(vm):
        return vm.cmd("qom-get", path="/machine/peripheral/iommu", property="type")

    def wait_for_init(self, console, wait_boot, deadline):
        """Let `wait_boot(vm)` (the test's wait_for_console_pattern for the
        kernel's INIT_MESSAGE) consume the kernel's boot messages, with the
        console socket timing out at `deadline`; what it read is parsed.
        Its failure (a panic, the console's end, silence) ends the reading;
        the cell's checks then say what is missing."""
        vm = console.vm
        try:
            vm.console_socket.settimeout(max(1.0, deadline - time.monotonic()))
            console.feed(wait_boot(vm) or b"", logged=True)
        except socket.timeout:
            self.boot_error = (f"no console output for {self.timeout} s before the kernel "
                               "started /init")
            console.eof = True
        except (AssertionError, OSError) as e:
            self.boot_error = f"before /init: {e}"
            console.eof = True

    def run(self, vm, log=None, wait_boot=None):
        """Boot on `vm`, a QEMUMachine not yet launched, logging the console
        to `log`; wait_boot: see wait_for_init."""
        self.fresh_disk()
        self.prepare(vm)
        self.read_iommu_map(vm.binary, vm.args)
        t0 = time.monotonic()
        deadline = t0 + self.timeout
        vm.launch()
        try:
            if self.device:
                try:
                    self.qom_type = self.qom_type_of(vm)
                except Exception as e:
                    self.qmp_error = f"QMP: {e}"
            console = Console(vm, self.parse, log)
            if wait_boot:
                self.wait_for_init(console, wait_boot, deadline)
            if console.read(self._query_point, deadline) == "done" and self.device:
                self.query(vm)
            if console.read(None, deadline) == "timeout":
                self.timed_out = True
            else:
                # The console ended: QEMU exits (-no-reboot turns the
                # guest's power-off or reset into an exit).
                try:
                    vm.wait(timeout=max(5, int(deadline - time.monotonic())))
                except Exception:
                    self.timed_out = True
            self.wall = time.monotonic() - t0
        finally:
            self.exit_code = self.stop(vm)
            self.qemu_log = vm.get_log() or ""
        self.collect()
        return self

    @staticmethod
    def stop(vm):
        """Quit QEMU if it still runs (killed if it does not within 5 s);
        its exit status."""
        try:
            vm.shutdown(timeout=5)
        except Exception:  # AbnormalShutdown: killed
            pass
        return vm.exitcode()

    def read_iommu_map(self, qemu, args):
        """arm64 device-tree boots: the iommu-map QEMU gives the PCIe node
        for this very command line (`-M virt,dumpdtb=`: QEMU writes the tree
        it would boot with and exits), as [(rid-base, iommu-phandle,
        iommu-base, length)]; written to iommu-map.txt. None if unavailable."""
        if self.arch != "arm64" or self.firmware:
            return None
        dtb = os.path.join(self.workdir, "virt.dtb")
        argv = [qemu, "-machine", f"{self.machine},dumpdtb={qemu_escape(dtb)}"] + list(args)
        try:
            subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=30, check=True)
            out = subprocess.run(["fdtget", "-t", "u", dtb, "/pcie@10000000", "iommu-map"],
                                 capture_output=True, text=True, timeout=10, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        finally:
            if os.path.exists(dtb):
                os.unlink(dtb)
        cells = [int(x) for x in out.split()]
        self.iommu_map = [tuple(cells[k:k + 4]) for k in range(0, len(cells) - 3, 4)]
        with open(os.path.join(self.logdir, "iommu-map.txt"), "w") as f:
            for rid, ph, base, n in self.iommu_map:
                f.write(f"rid 0x{rid:04x}-0x{rid + n - 1:04x} -> iommu <{ph}> "
                        f"0x{base:04x}\n")
        return self.iommu_map

    # -- what the guest printed ---------------------------------------------

    def parse(self, line):
        f = FAULT_RE.search(line)
        if f:
            self.faults.append(f.group(1))
        p = PROBE_RE.search(line)
        if p:
            self.kernel_input_bits = p.group(1)
        k = MARKER_RE.match(line)
        if k:
            kv = parse_kv(k.group(4))
            kv["status"] = k.group(3)
            self.markers.append((self._side, k.group(1), k.group(2), kv))
        m = RESULT_RE.match(line)
        if not m:
            return
        self.result_lines.append(line)
        self.sides.append((self._side, line))
        name, status, rest = m.groups()
        self.side[name] = self._side
        rec = {"status": status}
        rec.update(parse_kv(rest))
        # Repeated checks (one `read` line per block size) are kept as a list.
        if name == "read":
            self.results.setdefault("read", []).append(rec)
        else:
            self.results[name] = rec

    def marker(self, check, what):
        """The side of the first such CHECK marker, None if there was none
        (or, outside a migration, if there was one)."""
        for side, c, w, _ in self.markers:
            if (c, w) == (check, what):
                return side
        return None

    def has_marker(self, check, what):
        return any((c, w) == (check, what) for _, c, w, _ in self.markers)
