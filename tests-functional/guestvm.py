# SPDX-License-Identifier: GPL-2.0-or-later
"""Boot the functional-test guest under QEMU and collect what it reports.

One `GuestRun` is one QEMU process: q35 under TCG (or, with arch="arm64",
aarch64's virt machine, booted from the device tree or through UEFI), the
guest kernel and initramfs from scripts/guest/build-image.sh, optionally a
virtio-iommu device (the C `virtio-iommu-pci` or the Rust `virtio-iommu-rs`), a fresh
scratch virtio-blk disk and a virtio-net NIC on a restricted slirp network
whose only peer is tests-functional/netpeer.py. The guest's /init prints
`RESULT <check> ok|fail key=value...` lines on the serial console and powers
off; this module parses them, and talks QMP to QEMU to confirm from the host
side which device is under test and what its driver negotiated.

Only the Python standard library is used."""

import hashlib
import json
import os
import re
import select
import shlex
import shutil
import socket
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_QEMU = os.path.join(ROOT, "build", "bin", "qemu-system-x86_64")
DEFAULT_GUEST = os.path.join(ROOT, "build", "guest")
QBOOT = "/usr/share/qemu/qboot.rom"
DEFAULT_QEMU_ARM64 = os.path.join(ROOT, "build", "bin", "qemu-system-aarch64")
DEFAULT_GUEST_ARM64 = os.path.join(ROOT, "build", "guest-arm64")
# UEFI for the virt machine, from Debian's qemu-efi-aarch64 package. Given
# -kernel/-initrd/-append, its loader boots the kernel (EFI stub) with the
# machine's ACPI tables, VIOT included.
EFI_ARM64 = "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd"

# The machine and console per guest architecture.
ARCHES = {
    "x86_64": {"machine": ["-M", "q35"], "console": "ttyS0"},
    "arm64": {"machine": ["-M", "virt", "-cpu", "max"], "console": "ttyAMA0"},
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


def pattern(seed, mib):
    """The bytes the guest's make_pattern writes: 32-byte lines
    "<seed, 16 chars>:<index, 14 digits>\\n" (see scripts/guest/init)."""
    s = seed[:16].encode()
    return b"".join(b"%s:%014d\n" % (s, i) for i in range(mib * 1024 * 1024 // 32))


def netpeer_reply(seed, n):
    # The same derivation as netpeer.py's reply (imported, not duplicated).
    import importlib.util
    spec = importlib.util.spec_from_file_location("netpeer", os.path.join(HERE, "netpeer.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.reply_bytes(seed, n)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


class QMP:
    """A minimal QMP client on a socket QEMU connected to (we listen, QEMU
    connects: no race on who creates the socket first)."""

    def __init__(self, conn, timeout=10):
        self.sock = conn
        self.sock.settimeout(timeout)
        self.buf = b""
        self.events = []
        greeting = self._recv()
        if "QMP" not in greeting:
            raise RuntimeError(f"not a QMP greeting: {greeting}")
        self.cmd("qmp_capabilities")

    def _recv(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("QMP connection closed")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line)

    # name is positional-only: some commands take an argument called name.
    def cmd(self, name, /, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            reply = self._recv()
            if "event" in reply:
                self.events.append(reply)
                continue
            if "error" in reply:
                raise RuntimeError(f"QMP {name}: {reply['error'].get('desc')}")
            return reply.get("return")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class GuestRun:
    """One boot. `device` is None (no IOMMU) or a -device driver name."""

    def __init__(self, workdir, device=None, mode="strict", boot_bypass=True,
                 checks="iommu-driver,groups,disk,net,read", reads="1M:64", disk_mib=4,
                 net_kib=1024, qemu=DEFAULT_QEMU, guest=DEFAULT_GUEST, timeout=120,
                 seed=None, disk_size_mib=256, watchdog=30, bypass_disk=False,
                 arch="x86_64", firmware=None, disk_bus="pci", noncoherent_disk=False):
        self.workdir = workdir
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
        # virtio-iommu-rs's `endpoints` property, read with the virtio status
        self.endpoints = None
        self.device = device
        self.mode = mode
        self.boot_bypass = boot_bypass
        self.checks = checks
        self.reads = reads
        self.disk_mib = disk_mib
        self.net_kib = net_kib
        self.qemu = qemu
        self.guest = guest
        self.timeout = timeout
        self.seed = seed or os.urandom(8).hex()
        self.disk_size_mib = disk_size_mib
        self.watchdog = watchdog
        # Filled by run():
        self.results = {}      # check name -> {"status": ok|fail|None, key: value}
        self.result_lines = []
        self.wall = None       # seconds from QEMU start to its exit
        self.exit_code = None
        self.timed_out = False
        self.qom_type = None
        self.virtio_status = None
        self.qmp_error = None
        self.disk_sha256 = None
        self.peer = []         # netpeer.py's records
        self.faults = []       # fault reports the guest driver logged
        self.kernel_input_bits = None  # from the driver's probe message
        self.argv = []
        self.iommu_map = None  # arm64 DT boots: the PCIe node's iommu-map

    # -- command line -------------------------------------------------------

    def _append(self):
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

    def build_argv(self, qmp_path, console="console.log", device=None, incoming=False):
        """The QEMU command line. A migration destination gets the same one
        except for its console file, QMP socket, IOMMU driver (`device`,
        default self.device) and `-incoming defer`."""
        device = device or self.device
        disk = os.path.join(self.workdir, "scratch.raw")
        peer_cmd = " ".join(shlex.quote(a) for a in (
            shutil.which("python3") or "python3", os.path.join(HERE, "netpeer.py"),
            os.path.join(self.workdir, "netpeer.log"), self.seed))
        argv = [self.qemu] + ARCHES[self.arch]["machine"] + [
                "-accel", "tcg", "-m", "512", "-smp", "1",
                "-nodefaults", "-display", "none", "-no-reboot",
                "-kernel", os.path.join(self.guest, "vmlinuz"),
                "-initrd", os.path.join(self.guest, "initramfs.gz"),
                "-append", self._append(),
                "-serial", "file:" + os.path.join(self.workdir, console),
                "-qmp", "unix:" + qmp_path]
        if incoming:
            argv += ["-incoming", "defer"]
        if self.firmware == "uefi":
            argv += ["-bios", EFI_ARM64]
        elif self.arch != "x86_64":
            # A device-tree boot: QEMU loads the kernel, no firmware does DMA.
            pass
        elif not self.boot_bypass:
            # With boot-bypass=off the IOMMU blocks DMA until the guest
            # driver configures it; SeaBIOS's own disk DMA then times out
            # (~60 s). qboot loads the kernel through fw_cfg and does no DMA.
            argv += ["-bios", QBOOT]
        if device and (self.bypass_disk or self.noncoherent_disk):
            # An array property needs the JSON form of -device.
            props = {"driver": device, "id": "iommu", "boot-bypass": self.boot_bypass}
            if self.bypass_disk:
                props["bypass-devices"] = ["blk0"]
            if self.noncoherent_disk:
                props["noncoherent-devices"] = ["blk0"]
            argv += ["-device", json.dumps(props)]
        elif device:
            argv += ["-device", f"{device},id=iommu,"
                     f"boot-bypass={'on' if self.boot_bypass else 'off'}"]
        # iommu_platform=on makes the devices' DMA go through the IOMMU
        # (VIRTIO_F_ACCESS_PLATFORM); q35 needs disable-legacy=on with it
        # (virt gets the same devices).
        argv += ["-drive", f"file={qemu_escape(disk)},format=raw,if=none,id=scratch"]
        if self.disk_bus == "mmio":
            # A modern transport (a legacy one cannot negotiate
            # VIRTIO_F_ACCESS_PLATFORM); JSON, so that QEMU creates the disk
            # after the IOMMU, as the IOMMU must come first.
            argv += ["-global", "virtio-mmio.force-legacy=false",
                     "-device", json.dumps({"driver": "virtio-blk-device", "id": "blk0",
                                            "drive": "scratch", "iommu_platform": True})]
        else:
            argv += ["-device", "virtio-blk-pci,id=blk0,drive=scratch,iommu_platform=on,"
                                "disable-legacy=on"]
        argv += [
                 # restrict=on: no route out of the VM; the guestfwd -cmd is the
                 # only thing the guest can talk to.
                 "-netdev", f"user,id=net0,restrict=on,guestfwd=tcp:{NETPEER}-cmd:"
                            + qemu_escape(peer_cmd),
                 # romfile=: the guest boots from -kernel, so no iPXE ROM.
                 "-device", "virtio-net-pci,netdev=net0,iommu_platform=on,"
                            "disable-legacy=on,romfile="]
        return argv

    # -- running -------------------------------------------------------------

    @staticmethod
    def _stop(proc, qmp):
        """Ask QEMU to quit, kill it if it does not within 5 s."""
        if proc.poll() is None:
            try:
                if qmp:
                    qmp.cmd("quit")
                proc.wait(5)
            except (OSError, RuntimeError, EOFError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
        return proc.returncode

    def _fresh_workdir(self, outputs):
        """Remove an earlier run's `outputs` from the work directory and
        make a fresh, sparse, all-zero disk (its path is returned): nothing
        from an earlier run can make this one pass, and no two runs share
        an image."""
        os.makedirs(self.workdir, exist_ok=True)
        # Unix sockets live in a short directory of their own: a socket
        # path is limited to 107 bytes, and a work directory under a deep
        # checkout (CI's, for one) can be longer than that.
        self.sockdir = tempfile.mkdtemp(prefix="viommu-")
        for f in outputs:
            try:
                os.unlink(os.path.join(self.workdir, f))
            except FileNotFoundError:
                pass
        disk = os.path.join(self.workdir, "scratch.raw")
        with open(disk, "wb") as f:
            f.truncate(self.disk_size_mib * 1024 * 1024)
        return disk

    def run(self):
        disk = self._fresh_workdir(("console.log", "netpeer.log", "qemu.stderr"))

        qmp_path = os.path.join(self.sockdir, "qmp.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(qmp_path)
        listener.listen(1)
        listener.settimeout(15)

        self.argv = self.build_argv(qmp_path)
        with open(os.path.join(self.workdir, "cmdline"), "w") as f:
            f.write(" ".join(shlex.quote(a) for a in self.argv) + "\n")
        self.read_iommu_map()
        console = os.path.join(self.workdir, "console.log")
        stderr = open(os.path.join(self.workdir, "qemu.stderr"), "wb")
        t0 = time.monotonic()
        proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                stdout=stderr, stderr=stderr)
        qmp = None
        try:
            try:
                conn, _ = listener.accept()
                qmp = QMP(conn)
                self.qom_type = qmp.cmd("qom-get", path="/machine/peripheral/iommu",
                                        property="type") if self.device else None
            except (OSError, RuntimeError, EOFError) as e:
                self.qmp_error = f"QMP: {e}"
            queried = False
            pos = 0
            partial = ""
            deadline = t0 + self.timeout
            while True:
                done = proc.poll() is not None
                pos, partial = self._read_console(console, pos, partial)
                # Ask QEMU what the guest driver negotiated once the guest has
                # looked at its groups: by then the driver has probed, and the
                # disk and network checks still keep the guest busy for
                # seconds, far from the reset of the power-off. A stuck guest's
                # watchdog waits 2 s before powering off for the same reason.
                if (qmp and self.device and not queried
                        and ("groups" in self.results or "watchdog" in self.results
                             or "iommu-driver" in self.results and "groups" not in self.checks)):
                    queried = True
                    try:
                        self.virtio_status = qmp.cmd(
                            "x-query-virtio-status",
                            path="/machine/peripheral/iommu/virtio-backend")
                    except (OSError, RuntimeError, EOFError) as e:
                        self.qmp_error = f"x-query-virtio-status: {e}"
                    if self.device == "virtio-iommu-rs":
                        try:
                            self.endpoints = qmp.cmd(
                                "qom-get", path="/machine/peripheral/iommu",
                                property="endpoints")
                        except (OSError, RuntimeError, EOFError) as e:
                            self.qmp_error = f"qom-get endpoints: {e}"
                if done:
                    break
                if time.monotonic() > deadline:
                    self.timed_out = True
                    break
                time.sleep(0.1)
            if self.timed_out:
                self._stop(proc, qmp)
            self.wall = time.monotonic() - t0
            self.exit_code = proc.returncode
            self._read_console(console, pos, partial + "\n")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if qmp:
                qmp.close()
            listener.close()
            stderr.close()
            shutil.rmtree(self.sockdir, ignore_errors=True)

        peer_log = os.path.join(self.workdir, "netpeer.log")
        if os.path.exists(peer_log):
            with open(peer_log) as f:
                self.peer = [json.loads(line) for line in f if line.strip()]
        # What the guest left on the disk, read by the host after QEMU exited.
        with open(disk, "rb") as f:
            self.disk_sha256 = sha256(f.read(self.disk_mib * 1024 * 1024))
        os.unlink(disk)
        return self

    def read_iommu_map(self):
        """arm64 device-tree boots: the iommu-map QEMU gives the PCIe node
        for this very command line (`-M virt,dumpdtb=`: QEMU writes the tree
        it would boot with and exits), as [(rid-base, iommu-phandle,
        iommu-base, length)]; written to iommu-map.txt. None if unavailable."""
        if self.arch != "arm64" or self.firmware or not self.argv:
            return None
        dtb = os.path.join(self.workdir, "virt.dtb")
        # The same machine and devices; no QMP, no console file (QEMU would
        # truncate the guest's).
        argv, it = [], iter(self.argv)
        for a in it:
            if a == "-qmp":
                next(it)
            elif a == "-serial":
                argv += [a, "null"]
                next(it)
            else:
                argv.append("virt,dumpdtb=" + qemu_escape(dtb) if a == "virt" else a)
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
        with open(os.path.join(self.workdir, "iommu-map.txt"), "w") as f:
            for rid, ph, base, n in self.iommu_map:
                f.write(f"rid 0x{rid:04x}-0x{rid + n - 1:04x} -> iommu <{ph}> "
                        f"0x{base:04x}\n")
        return self.iommu_map

    def _read_console(self, path, pos, partial):
        try:
            with open(path, "rb") as f:
                f.seek(pos)
                data = f.read()
        except FileNotFoundError:
            return pos, partial
        text = partial + data.decode("utf-8", "replace")
        lines = text.split("\n")
        for line in lines[:-1]:
            self._parse(line.rstrip("\r"))
        return pos + len(data), lines[-1]

    def _parse(self, line):
        f = FAULT_RE.search(line)
        if f:
            self.faults.append(f.group(1))
        p = PROBE_RE.search(line)
        if p:
            self.kernel_input_bits = p.group(1)
        m = RESULT_RE.match(line)
        if not m:
            return
        self.result_lines.append(line)
        name, status, rest = m.groups()
        rec = {"status": status}
        for k, v, quoted in KV_RE.findall(rest):
            rec[k] = quoted if v.startswith('"') else v
        # Repeated checks (one `read` line per block size) are kept as a list.
        if name == "read":
            self.results.setdefault("read", []).append(rec)
        else:
            self.results[name] = rec

    def console_tail(self, n=15):
        try:
            with open(os.path.join(self.workdir, "console.log"), "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except FileNotFoundError:
            return []
        return lines[-n:]


def qemu_escape(s):
    # QemuOpts splits on ',' and takes ',,' for a literal comma.
    return s.replace(",", ",,")
