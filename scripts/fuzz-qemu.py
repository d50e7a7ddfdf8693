#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Fuzz a virtio-iommu at QEMU's level, as a hostile guest driver would.

QEMU runs with the qtest accelerator (no guest code): this script is the
guest. It speaks qtest's line protocol over a Unix socket, finds the
virtio-iommu on q35's PCI bus through 0xcf8/0xcfc, maps its BAR, brings it
up as a virtio 1.x driver (features, request queue 0, event queue 1,
DRIVER_OK), and then runs a seeded random list of steps: valid and
malformed requests, hostile descriptor chains, avail index jumps, kicks,
device and queue resets, config-space and common-config writes, and DMA by
the x-dma-test device (docs/dma-test-device.md) between the requests.

The same step list (a function of the seed only) runs against each device
asked for (virtio-iommu-rs, QEMU's C virtio-iommu-pci), one QEMU at a time.
A run fails when QEMU dies (exit or signal), stops answering (hang), prints
a Rust panic, an assertion, an abort or a sanitizer report, its anonymous
memory grows by more than --rss-limit-mb over the run, or the device no
longer answers a plain request after a reset. A virtio_error (NEEDS_RESET)
is legitimate: the driver then resets the device and sets it up again.

docs/fuzzing.md describes the steps, the options and how to replay a
failing seed.
"""

import argparse
import base64
import collections
import ctypes
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

# ---- the machine ---------------------------------------------------------

RAM_SIZE = 128 << 20
U64 = 2**64 - 1
PAGE = 0x1000

IOMMU_DEVFN = 0x20           # 04.0
DMA_DEVFN = 0x28             # 05.0: x-dma-test, endpoint 0x28
EDU_DEVFN = 0x30             # 06.0: edu, an MMIO target (endpoint 0x30)

# Where this driver puts each device's BARs (biggest BAR first)
BAR_BASE = {IOMMU_DEVFN: 0xE0000000, DMA_DEVFN: 0xE0100000, EDU_DEVFN: 0xE0200000}
IOMMU_BAR = BAR_BASE[IOMMU_DEVFN]  # virtio-pci modern BAR: common, isr, device, notify
DMA_BAR = BAR_BASE[DMA_DEVFN]
EDU_BAR = BAR_BASE[EDU_DEVFN]
APIC = 0xFEE00000
IOAPIC = 0xFEC00000
HPET = 0xFED00000

# Guest RAM layout (room for queues of up to 1024 entries)
RQ_RING = (0x100000, 0x104000, 0x106000)   # desc, avail (driver), used (device)
EQ_RING = (0x110000, 0x114000, 0x116000)
OUT_AREA = 0x200000          # device-readable request buffers (1 MiB)
IN_AREA = 0x300000           # device-writable answer buffers (1 MiB)
IND_AREA = 0x400000          # indirect descriptor tables (1 MiB)
EVT_AREA = 0x500000          # event (fault) buffers
DMA_RAM = 0x1000000          # what MAPs point to (1 MiB)
BIG_AREA = 0x2000000         # large answer buffers (64 MiB)
IOVA_BASE = 0x0C000000       # IOVAs: 192 MiB, beyond RAM (bypassed DMA there fails)
IOVA_PAGES = 32

CANARY_DOMAIN = 0xFFFFFFF0

SPIKE_KIB = 1024             # RSS growth of one step above which it is a peak, not a leak   # never generated: UNMAP there answers NOENT

# virtio-pci modern common configuration (virtio 1.2, 4.1.4.3)
C_DFSELECT, C_DF, C_GFSELECT, C_GF = 0, 4, 8, 12
C_MSIX, C_NUMQ, C_STATUS, C_CFGGEN = 16, 18, 20, 21
C_QSEL, C_QSIZE, C_QMSIX, C_QENABLE, C_QNOFF = 22, 24, 26, 28, 30
C_QDESC, C_QDRIVER, C_QDEVICE, C_QNDATA, C_QRESET = 32, 40, 48, 56, 58

S_ACK, S_DRIVER, S_DRIVER_OK, S_FEATURES_OK, S_NEEDS_RESET, S_FAILED = 1, 2, 4, 8, 0x40, 0x80

F_VERSION_1 = 1 << 32
F_INDIRECT = 1 << 28
F_EVENT_IDX = 1 << 29
F_RING_RESET = 1 << 40
F_IOMMU_ALL = 0x3F           # INPUT_RANGE, DOMAIN_RANGE, MAP_UNMAP, BYPASS, PROBE, MMIO
F_BYPASS_CONFIG = 1 << 6
DEFAULT_FEATURES = F_VERSION_1 | F_IOMMU_ALL | F_BYPASS_CONFIG | F_INDIRECT | F_RING_RESET

D_NEXT, D_WRITE, D_INDIRECT = 1, 2, 4

# virtio-iommu requests (virtio 1.2, 5.13.6)
T_ATTACH, T_DETACH, T_MAP, T_UNMAP, T_PROBE = 1, 2, 3, 4, 5
TYPE_NAMES = {T_ATTACH: "ATTACH", T_DETACH: "DETACH", T_MAP: "MAP", T_UNMAP: "UNMAP",
              T_PROBE: "PROBE"}
STATUS_NAMES = ["OK", "IOERR", "UNSUPP", "DEVERR", "INVAL", "RANGE", "NOENT", "FAULT", "NOMEM"]
PROBE_ANSWER = 512 + 4       # probe_size + tail
EP_DMA = DMA_DEVFN

# x-dma-test registers (docs/dma-test-device.md)
R_SRC, R_DST, R_LEN, R_COUNT, R_PATH, R_CMD, R_FAILED = 0x08, 0x10, 0x18, 0x1C, 0x20, 0x24, 0x28
R_UNMAPS, R_MISSES = 0x3C, 0x4C
DMA_CMDS = {1: "READ", 2: "WRITE", 3: "COPY", 4: "MAP", 5: "MAP_WRITE", 6: "MAP_RELEASE",
            7: "REPLAY"}

FAILURE_PATTERNS = [
    ("panic", re.compile(r"panicked at|thread '.*' panicked")),
    ("assertion", re.compile(r"Assertion|assertion failed")),
    ("abort", re.compile(r"Aborted|core dumped")),
    ("sanitizer", re.compile(r"AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|"
                             r"runtime error:")),
    ("segfault", re.compile(r"Segmentation fault")),
]

DEVICES = {"rs": "virtio-iommu-rs", "c": "virtio-iommu-pci",
           # the Rust device taking every request through virtqueue_pop
           # (mapped), which --compare checks the default (copied) path
           # against
           "rs-map": "virtio-iommu-rs"}
DEVICE_PROPS = {"rs-map": ",x-copy-requests=off"}
# The IOMMU's virtio backend, for QMP's x-query-virtio-queue-status
VIRTIO_PATH = "/machine/peripheral/viommu/virtio-backend"


class QemuGone(Exception):
    """QEMU exited or closed the socket."""


class QemuHang(Exception):
    """QEMU did not answer within the timeout."""


class RunFailure(Exception):
    """A condition the run counts as failed (canary unanswered, ...)."""


# ---- qtest client --------------------------------------------------------

class QTest:
    def __init__(self, argv, stderr_path, timeout, tmpdir, mem_limit_mb=0, qmp=False):
        self.timeout = timeout
        path = os.path.join(tmpdir, "qtest.sock")
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
        srv.listen(1)
        srv.settimeout(0.1)
        self.argv = argv[:1] + ["-qtest", "unix:" + path, "-qtest-log", "/dev/null"] + argv[1:]
        self.qmp_path = os.path.join(tmpdir, "qmp.sock") if qmp else None
        self.qmp = None
        if self.qmp_path:
            self.argv += ["-chardev", "socket,id=qmp,path=%s,server=on,wait=off" % self.qmp_path,
                          "-mon", "chardev=qmp,mode=control"]
        self.errf = open(stderr_path, "wb")
        def limit():
            # QEMU dies with this script (PR_SET_PDEATHSIG), and a runaway
            # allocation aborts it instead of exhausting the host
            try:
                ctypes.CDLL(None).prctl(1, signal.SIGKILL)
            except (OSError, AttributeError):
                pass
            if mem_limit_mb:
                lim = mem_limit_mb << 20
                resource.setrlimit(resource.RLIMIT_AS, (lim, lim))

        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self.errf,
                                     stderr=self.errf, preexec_fn=limit)
        deadline = time.monotonic() + max(30, timeout)
        try:
            while True:
                try:
                    self.sock, _ = srv.accept()
                    break
                except socket.timeout:
                    if self.proc.poll() is not None:
                        raise QemuGone("QEMU exited before connecting")
                    if time.monotonic() > deadline:
                        raise QemuHang("QEMU did not connect")
        finally:
            srv.close()
            os.unlink(path)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.count = 0
        if self.qmp_path:
            self.qmp = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.qmp.settimeout(timeout)
            self.qmp.connect(self.qmp_path)
            self.qmp_file = self.qmp.makefile("rwb")
            self.qmp_file.readline()                     # the greeting
            self.qmp_cmd("qmp_capabilities")

    def qmp_cmd(self, name, **args):
        """A QMP command's return value (events are skipped)."""
        try:
            self.qmp_file.write(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
            self.qmp_file.flush()
            while True:
                line = self.qmp_file.readline()
                if not line:
                    raise QemuGone("QMP socket closed")
                r = json.loads(line)
                if "return" in r:
                    return r["return"]
                if "error" in r:
                    raise RuntimeError("QMP %s: %s" % (name, r["error"]))
        except socket.timeout:
            raise QemuHang("no QMP answer to %s within %g s" % (name, self.timeout)) from None
        except OSError as e:
            raise QemuGone("QMP failed: %s" % e) from None

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def cmd(self, line):
        self.count += 1
        try:
            self.sock.sendall(line.encode() + b"\n")
        except OSError as e:
            raise QemuGone("send failed: %s" % e) from None
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                resp = self.buf[:i].decode("ascii", "replace")
                self.buf = self.buf[i + 1:]
                if resp.startswith("IRQ"):
                    continue
                if resp.startswith("OK"):
                    return resp[2:].strip()
                raise RuntimeError("qtest refused %r: %r" % (line[:80], resp))
            try:
                data = self.sock.recv(1 << 16)
            except socket.timeout:
                raise QemuHang("no answer to %r within %g s" % (line[:80], self.timeout)) from None
            except OSError as e:
                raise QemuGone("recv failed: %s" % e) from None
            if not data:
                raise QemuGone("socket closed")
            self.buf += data

    # port I/O
    def outb(self, a, v): self.cmd("outb 0x%x 0x%x" % (a, v))
    def outw(self, a, v): self.cmd("outw 0x%x 0x%x" % (a, v))
    def outl(self, a, v): self.cmd("outl 0x%x 0x%x" % (a, v))
    def inb(self, a): return int(self.cmd("inb 0x%x" % a), 0)
    def inw(self, a): return int(self.cmd("inw 0x%x" % a), 0)
    def inl(self, a): return int(self.cmd("inl 0x%x" % a), 0)

    # memory
    def w(self, size, a, v):
        self.cmd("write%s 0x%x 0x%x" % ("bwlq"[(1, 2, 4, 8).index(size)], a,
                                           v & ((1 << (8 * size)) - 1)))

    def r(self, size, a):
        return int(self.cmd("read%s 0x%x" % ("bwlq"[(1, 2, 4, 8).index(size)], a)), 0)

    def write(self, a, data):
        if data:
            self.cmd("b64write 0x%x 0x%x %s" % (a, len(data), base64.b64encode(data).decode()))

    def read(self, a, n):
        if n == 0:
            return b""
        return base64.b64decode(self.cmd("b64read 0x%x 0x%x" % (a, n)))

    def memset(self, a, n, v):
        self.cmd("memset 0x%x 0x%x 0x%x" % (a, n, v))

    def rss(self):
        """(VmRSS, RssAnon) in KiB."""
        vals = {}
        try:
            with open("/proc/%d/status" % self.pid) as f:
                for line in f:
                    k, _, v = line.partition(":")
                    if k in ("VmRSS", "RssAnon"):
                        vals[k] = int(v.split()[0])
        except OSError:
            pass
        return vals.get("VmRSS", 0), vals.get("RssAnon", 0)

    def backtrace(self, path):
        gdb = shutil.which("gdb")
        if not gdb or not self.alive():
            return
        try:
            out = subprocess.run([gdb, "-p", str(self.pid), "-batch", "-nx",
                                  "-ex", "thread apply all bt"],
                                 capture_output=True, timeout=120, text=True)
            with open(path, "w") as f:
                f.write(out.stdout + out.stderr)
        except (subprocess.SubprocessError, OSError):
            pass

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.errf.close()


# ---- the driver ----------------------------------------------------------

class Ring:
    def __init__(self, q, addrs):
        self.q = q
        self.desc, self.avail, self.used = addrs
        self.reset(256)

    def reset(self, qs):
        self.qs = max(qs, 1)
        self.next = 0          # next descriptor slot
        self.avail_idx = 0
        self.last_used = 0
        self.pending_bad = False   # a broken chain made available, not kicked yet
        self.pending_n = 0         # descriptors made available, not kicked yet
        self.pending_avail = 0     # avail entries made, not kicked yet


DEFAULT_VARIANT = {"qs": [256, 256], "feat": DEFAULT_FEATURES, "raw": False, "evt": 8,
                   "evt_len": 64}


class Driver:
    """One QEMU with one virtio-iommu, driven by a step list."""

    def __init__(self, qt, stats):
        self.qt = qt
        self.st = stats
        self.rq = Ring(0, RQ_RING)
        self.eq = Ring(1, EQ_RING)
        self.ready = False
        self.desync = False
        self.features = 0
        self.log = None
        self.cur_step = None
        self.quirky = False
        # --compare: what the driver saw, step by step (observe())
        self.trace = None
        self.answer_bytes = []

    # -- PCI --
    def cfg_addr(self, devfn, off):
        return 0x80000000 | (devfn << 8) | (off & 0xFC)

    def pci_read(self, devfn, off, size):
        self.qt.outl(0xCF8, self.cfg_addr(devfn, off))
        port = 0xCFC + (off & 3)
        return {1: self.qt.inb, 2: self.qt.inw, 4: self.qt.inl}[size](port)

    def pci_write(self, devfn, off, size, v):
        self.qt.outl(0xCF8, self.cfg_addr(devfn, off))
        port = 0xCFC + (off & 3)
        {1: self.qt.outb, 2: self.qt.outw, 4: self.qt.outl}[size](port, v)

    def map_bars(self, devfn):
        bars = []
        i = 0
        while i < 6:
            off = 0x10 + 4 * i
            self.pci_write(devfn, off, 4, 0xFFFFFFFF)
            v = self.pci_read(devfn, off, 4)
            if v == 0 or v & 1:
                i += 1
                continue
            is64 = (v >> 1) & 3 == 2
            mask = v & ~0xF
            if is64:
                self.pci_write(devfn, off + 4, 4, 0xFFFFFFFF)
                mask |= self.pci_read(devfn, off + 4, 4) << 32
                size = ((~mask) & ((1 << 64) - 1)) + 1
            else:
                size = ((~mask) & 0xFFFFFFFF) + 1
            bars.append((size, i, is64))
            i += 2 if is64 else 1
        addr = BAR_BASE[devfn]
        for size, i, is64 in sorted(bars, reverse=True):
            addr = (addr + size - 1) & ~(size - 1)
            self.pci_write(devfn, 0x10 + 4 * i, 4, addr & 0xFFFFFFFF)
            if is64:
                self.pci_write(devfn, 0x14 + 4 * i, 4, addr >> 32)
            addr += size
        self.pci_write(devfn, 0x04, 2, 0x6)   # memory space, bus master

    def bar_addr(self, devfn, i):
        lo = self.pci_read(devfn, 0x10 + 4 * i, 4)
        a = lo & ~0xF
        if (lo >> 1) & 3 == 2:
            a |= self.pci_read(devfn, 0x14 + 4 * i, 4) << 32
        return a

    def platform_init(self):
        """Find the devices, map the BARs, parse the virtio capabilities."""
        vid = self.pci_read(IOMMU_DEVFN, 0, 4)
        if vid != 0x10571AF4:
            raise RunFailure("no virtio-iommu at 04.0 (id 0x%08x)" % vid)
        for devfn in (IOMMU_DEVFN, DMA_DEVFN, EDU_DEVFN):
            if self.pci_read(devfn, 0, 2) != 0xFFFF:
                self.map_bars(devfn)
        caps = {}
        ptr = self.pci_read(IOMMU_DEVFN, 0x34, 1) & 0xFC
        for _ in range(48):
            if not ptr:
                break
            vndr = self.pci_read(IOMMU_DEVFN, ptr, 1)
            nxt = self.pci_read(IOMMU_DEVFN, ptr + 1, 1) & 0xFC
            if vndr == 0x09:
                cfg_type = self.pci_read(IOMMU_DEVFN, ptr + 3, 1)
                bar = self.pci_read(IOMMU_DEVFN, ptr + 4, 1)
                off = self.pci_read(IOMMU_DEVFN, ptr + 8, 4)
                length = self.pci_read(IOMMU_DEVFN, ptr + 12, 4)
                mult = self.pci_read(IOMMU_DEVFN, ptr + 16, 4) if cfg_type == 2 else 0
                caps.setdefault(cfg_type, (bar, off, length, mult))
            ptr = nxt
        for t in (1, 2, 3, 4):
            if t not in caps:
                raise RunFailure("virtio capability %d missing" % t)
        base = {}
        for t, (bar, off, length, mult) in caps.items():
            if bar not in base:
                base[bar] = self.bar_addr(IOMMU_DEVFN, bar)
        self.common = base[caps[1][0]] + caps[1][1]
        self.notify = base[caps[2][0]] + caps[2][1]
        self.notify_mult = caps[2][3]
        self.isr = base[caps[3][0]] + caps[3][1]
        self.devcfg = base[caps[4][0]] + caps[4][1]
        if self.pci_read(DMA_DEVFN, 0, 4) != 0x10F01B36:
            raise RunFailure("no x-dma-test at 05.0")

    # -- common configuration --
    def cw(self, size, off, v):
        self.qt.w(size, self.common + off, v)

    def cr(self, size, off):
        return self.qt.r(size, self.common + off)

    def status(self):
        return self.cr(1, C_STATUS)

    def kick(self, q):
        self.qt.w(2, self.notify + q * self.notify_mult, q)

    def setup_queue(self, ring, qs):
        self.cw(2, C_QSEL, ring.q)
        self.cw(2, C_QSIZE, qs)
        eff = self.cr(2, C_QSIZE)
        eff = eff if 0 < eff <= 1024 else 256
        self.qt.memset(ring.desc, 16 * 1024, 0)
        self.qt.memset(ring.avail, 6 + 2 * 1024, 0)
        self.qt.memset(ring.used, 6 + 8 * 1024, 0)
        for off, a in ((C_QDESC, ring.desc), (C_QDRIVER, ring.avail), (C_QDEVICE, ring.used)):
            self.cw(4, off, a & 0xFFFFFFFF)
            self.cw(4, off + 4, a >> 32)
        self.cw(2, C_QENABLE, 1)
        ring.reset(eff)

    def setup(self, v=None):
        """Driver initialisation (virtio 1.2, 3.1.1). Returns whether the
        device reached DRIVER_OK."""
        v = v or DEFAULT_VARIANT
        self.ready = False
        self.desync = False
        self.cw(1, C_STATUS, 0)
        for _ in range(100):
            if self.status() == 0:
                break
        self.cw(1, C_STATUS, S_ACK)
        self.cw(1, C_STATUS, S_ACK | S_DRIVER)
        self.cw(4, C_DFSELECT, 0)
        lo = self.cr(4, C_DF)
        self.cw(4, C_DFSELECT, 1)
        hi = self.cr(4, C_DF)
        offered = lo | hi << 32
        feat = v["feat"] if v.get("raw") else offered & v["feat"]
        self.features = feat
        self.quirky = not feat & F_VERSION_1 or bool(feat & ~(DEFAULT_FEATURES | F_EVENT_IDX))
        self.cw(4, C_GFSELECT, 0)
        self.cw(4, C_GF, feat & 0xFFFFFFFF)
        self.cw(4, C_GFSELECT, 1)
        self.cw(4, C_GF, feat >> 32)
        self.cw(1, C_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK)
        if not self.status() & S_FEATURES_OK:
            self.st["setup_refused"] += 1
            return False
        self.setup_queue(self.rq, v["qs"][0])
        self.setup_queue(self.eq, v["qs"][1])
        self.cw(1, C_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK)
        self.post_events(v["evt"], v["evt_len"])
        st = self.status()
        self.ready = bool(st & S_DRIVER_OK) and not st & S_NEEDS_RESET
        return self.ready

    def post_events(self, n, length):
        n = min(n, self.eq.qs - (self.eq.avail_idx - self.eq.last_used) % 65536)
        chains = []
        for i in range(max(n, 0)):
            slot = (self.eq.next + i) % self.eq.qs
            chains.append({"d": [[EVT_AREA + (slot % 256) * 0x100, length, D_WRITE, None]]})
        if chains:
            self.run_chains(self.eq, chains, kick=True)

    def resync(self, why):
        if not self.desync:
            self.st["faults_delivered"] += len(self.collect_used(self.eq))
        self.st["resyncs"] += 1
        self.st["resync_" + why] += 1
        if not self.setup():
            raise RunFailure("device does not reach DRIVER_OK after a reset (%s)" % why)
        self.canary()

    def canary(self):
        """After a reset, a plain request must be answered."""
        req = struct.pack("<BxxxIQQ4x", T_UNMAP, CANARY_DOMAIN, 0, PAGE - 1)
        ch = {"d": [[OUT_AREA, len(req), D_NEXT, 1], [IN_AREA, 4, D_WRITE, None]],
              "data": [[OUT_AREA, req.hex()]], "w": [[IN_AREA, 4]], "t": T_UNMAP, "e": 1}
        self.qt.memset(IN_AREA, 4, 0xFF)
        res = self.run_chains(self.rq, [ch], kick=True, stats=False)
        if res[0] is None:
            raise RunFailure("device did not answer a plain UNMAP after a reset")
        if res[0] != 6:
            self.anomaly("canary UNMAP answered %s, not NOENT" % status_name(res[0]))

    def anomaly(self, what):
        self.st["anomalies"][what] += 1
        if self.log:
            self.log.write("step %s: %s\n" % (self.cur_step, what))

    # -- chains --
    def write_descs(self, table, descs):
        """descs: {slot: (addr, len, flags, next)} written as contiguous runs."""
        slots = sorted(descs)
        i = 0
        while i < len(slots):
            j = i
            while j + 1 < len(slots) and slots[j + 1] == slots[j] + 1:
                j += 1
            blob = b"".join(struct.pack("<QIHH", *descs[s]) for s in slots[i:j + 1])
            self.qt.write(table + 16 * slots[i], blob)
            i = j + 1

    def run_chains(self, ring, chains, kick=True, stats=True):
        """Place each chain's descriptors from ring.next on, make them
        available, kick, and decode the answers. Returns each chain's
        status (None when not answered, -1 when not decodable)."""
        heads = []
        # chains that do not fit in the ring overwrite each other
        n_descs = sum(len(ch["d"]) + ch.get("dup", 0) for ch in chains)
        fits = n_descs + ring.pending_n <= ring.qs
        # without VERSION_1 a virtio_error breaks the device silently (no
        # NEEDS_RESET): nothing can be expected then
        fits = fits and not self.quirky
        if kick:
            fits = fits and not ring.pending_bad
            ring.pending_bad = False
            ring.pending_n = 0
        else:
            ring.pending_n += n_descs  # their slots are taken until the next kick
            if any(not ch.get("e") for ch in chains):
                ring.pending_bad = True    # the next kick may find the device broken
        for ch in chains:
            for item in ch.get("data", []):
                if len(item) == 2:
                    self.qt.write(item[0], bytes.fromhex(item[1]))
                else:
                    self.qt.memset(item[0], item[1], item[2])
            for tbl in ch.get("ind", []):
                descs = {}
                for k, (a, ln, fl, nx) in enumerate(tbl["d"]):
                    nv = nx[0] if isinstance(nx, list) else (nx or 0)
                    descs[k] = (a & (2**64 - 1), ln & 0xFFFFFFFF, fl & 0xFFFF, nv & 0xFFFF)
                self.write_descs(tbl["at"], descs)
            base = ring.next
            descs = {}
            for k, (a, ln, fl, nx) in enumerate(ch["d"]):
                slot = (base + k) % ring.qs
                if nx is None:
                    nv = 0
                elif isinstance(nx, list):
                    nv = nx[0]
                else:
                    nv = (slot + nx) % ring.qs
                descs[slot] = (a & (2**64 - 1), ln & 0xFFFFFFFF, fl & 0xFFFF, nv & 0xFFFF)
            self.write_descs(ring.desc, descs)
            ring.next = (base + len(ch["d"])) % ring.qs
            heads.append(base)
            for _ in range(ch.get("dup", 0)):
                heads.append(base)
        ents = []
        for h in heads:
            ents.append((ring.avail_idx % ring.qs, h))
            ring.avail_idx = (ring.avail_idx + 1) & 0xFFFF
        for pos, h in ents:
            self.qt.w(2, ring.avail + 4 + 2 * pos, h)
        self.qt.w(2, ring.avail + 2, ring.avail_idx)
        if kick:
            self.kick(ring.q)
            waiting, ring.pending_avail = len(ents) + ring.pending_avail, 0
        else:
            ring.pending_avail += len(ents)
            waiting = 0
        used = self.collect_used(ring, expect_jump=waiting > ring.qs)
        results = []
        by_id = {}
        for uid, ulen in used:
            by_id.setdefault(uid, []).append(ulen)
        for ch, h in zip(chains, heads):
            lens = by_id.get(h)
            if not lens:
                results.append(None)
                if stats and kick and ch.get("e"):
                    if fits:
                        self.anomaly("well-formed request not answered")
                    self.desync = True
                continue
            ulen = lens.pop(0)
            if not fits and ch.get("e"):
                ch = dict(ch, e=0)     # its descriptors may be another chain's
            results.append(self.decode(ch, ulen, stats))
        if stats and ring is self.rq:
            self.st["answers"] += len(used)
        return results

    def collect_used(self, ring, expect_jump=False):
        idx = self.qt.r(2, ring.used + 2)
        new = (idx - ring.last_used) & 0xFFFF
        if new == 0:
            return []
        if new > ring.qs:
            if not expect_jump:
                self.anomaly("used index moved by more than the queue size")
            self.desync = True
            ring.last_used = idx
            return []
        first = ring.last_used % ring.qs
        if first + new <= ring.qs:
            raw = self.qt.read(ring.used + 4 + 8 * first, 8 * new)
        else:
            raw = self.qt.read(ring.used + 4, 8 * ring.qs)
            raw = (raw[8 * first:] + raw[:8 * first])[:8 * new]
        ring.last_used = idx
        return [struct.unpack_from("<II", raw, 8 * k) for k in range(new)]

    def decode(self, ch, ulen, stats):
        segs = ch.get("w", [])
        total = sum(ln for _, ln in segs)
        if self.trace is not None:
            self.answer_bytes.append(self.answer(segs, ulen))
        tname = TYPE_NAMES.get(ch.get("t"), "other")
        if ch.get("e") and ulen > total:
            self.anomaly("used length beyond the writable buffers")
        if ulen < 4 or ulen > total:
            if stats and ch.get("e"):
                self.st["requests"][tname + ":len%d" % ulen if ulen < 4 else tname + ":?"] += 1
            return -1
        off = ulen - 4
        for a, ln in segs:
            if off < ln:
                if a + off >= RAM_SIZE:
                    return -1
                s = self.qt.r(1, a + off)
                break
            off -= ln
        else:
            return -1
        if stats and not ch.get("e"):
            self.st["requests"]["(broken chains answered)"] += 1
        elif stats:
            self.st["requests"][tname + ":" + status_name(s)] += 1
            if tname == "other" and s != 2:
                self.anomaly("request of unknown type 0x%02x answered %s"
                             % (ch.get("t", -1) & 0xFF, status_name(s)))
            if ch.get("e") and ch.get("t") in TYPE_NAMES:
                want = PROBE_ANSWER if ch["t"] == T_PROBE and total >= PROBE_ANSWER else 4
                if ulen != want:
                    self.anomaly("%s answered with %d bytes" % (tname, ulen))
        return s

    def answer(self, segs, ulen):
        """The bytes the device wrote to a chain's buffers (up to its used
        length; 1 KiB at most, buffers in RAM only)."""
        out, left = b"", min(ulen, 1024)
        for a, ln in segs:
            n = min(ln, left)
            if n <= 0:
                break
            out += self.qt.read(a, n) if a + n <= RAM_SIZE else b"?" * n
            left -= n
        return out.hex()

    def observe(self):
        """What a driver can see of the device after a step, plus the virtio
        core's queue state (QMP): the device status, both used rings (index,
        entries, the avail event index) and the answers decoded in the step.
        Two devices that behave alike give equal observations."""
        obs = {"status": self.status(), "answers": self.answer_bytes}
        self.answer_bytes = []
        for ring in (self.rq, self.eq):
            obs["used%d" % ring.q] = self.qt.read(ring.used, 4 + 8 * ring.qs + 2).hex()
            q = self.qt.qmp_cmd("x-query-virtio-queue-status", path=VIRTIO_PATH, queue=ring.q)
            obs["queue%d" % ring.q] = {k: q.get(k) for k in (
                "inuse", "vring-num", "last-avail-idx", "shadow-avail-idx", "used-idx",
                "signalled-used", "signalled-used-valid")}
        return obs

    # -- steps --
    def step(self, s):
        op = s["op"]
        getattr(self, "op_" + op)(s)

    def op_req(self, s):
        if not s.get("kick", 1):
            self.st["unkicked"] += 1
        self.run_chains(self.rq, s["c"], kick=s.get("kick", 1))

    def op_evt(self, s):
        room = self.eq.qs - ((self.eq.avail_idx - self.eq.last_used) & 0xFFFF)
        chains = s["c"][:max(room, 0)]
        if chains:
            self.run_chains(self.eq, chains, kick=s.get("kick", 1), stats=False)

    def op_kick(self, s):
        self.qt.w(s["size"], self.notify + s["q"] * self.notify_mult, s["val"])
        self.collect_used(self.rq)

    def op_jump(self, s):
        self.rq.avail_idx = (self.rq.avail_idx + s["by"]) & 0xFFFF
        self.qt.w(2, self.rq.avail + 2, self.rq.avail_idx)
        self.kick(0)
        # QEMU's virtqueue_pop does not check the distance: the device
        # answers every stale ring entry up to the new index
        self.collect_used(self.rq, expect_jump=True)
        self.desync = True

    def op_cfgw(self, s):
        if s["off"] + s["size"] <= 0x1000:
            self.qt.w(s["size"], self.devcfg + s["off"], s["val"])

    def op_cfgr(self, s):
        if s["off"] + s["size"] <= 0x1000:
            self.qt.r(s["size"], self.devcfg + s["off"])

    def op_isr(self, s):
        self.qt.r(1, self.isr)

    def op_commonw(self, s):
        for off, size, val in s["w"]:
            self.cw(size, off, val)
        if s.get("req"):
            self.run_chains(self.rq, s["req"], kick=True, stats=False)
        self.desync = True

    def op_feat(self, s):
        # feature renegotiation attempts while DRIVER_OK
        self.cw(4, C_GFSELECT, s["sel"])
        self.cw(4, C_GF, s["val"])
        if s.get("status") is not None:
            self.cw(1, C_STATUS, s["status"])
        self.cw(2, C_QSEL, 0)
        if s.get("req"):
            self.run_chains(self.rq, s["req"], kick=True, stats=False)
        st = self.status()
        if s.get("status") is not None or not st & S_DRIVER_OK:
            self.desync = True

    def op_qreset(self, s):
        ring = self.rq if s["q"] == 0 else self.eq
        self.cw(2, C_QSEL, ring.q)
        self.cw(2, C_QRESET, 1)
        self.cr(2, C_QRESET)
        enabled = self.cr(2, C_QENABLE)
        if s.get("kick_while"):
            self.kick(ring.q)
        if enabled:
            self.desync = True
            return
        if s.get("reenable", 1):
            self.setup_queue(ring, s.get("qs", ring.qs))
            if ring is self.eq:
                self.post_events(8, 64)
        else:
            self.desync = True

    def op_reset(self, s):
        v = dict(DEFAULT_VARIANT)
        v.update(s.get("v", {}))
        if not self.setup(v):
            self.desync = True

    def op_remap(self, s):
        self.cw(2, C_QSEL, s["q"])
        if s.get("qs") is not None:
            self.cw(2, C_QSIZE, s["qs"])
        for off, a in ((C_QDESC, s["desc"]), (C_QDRIVER, s["avail"]), (C_QDEVICE, s["used"])):
            self.cw(4, off, a & 0xFFFFFFFF)
            self.cw(4, off + 4, (a >> 32) & 0xFFFFFFFF)
        self.cw(2, C_QENABLE, 1)
        self.kick(s["q"])
        self.desync = True

    def op_bme(self, s):
        """Bus mastering off for one request or one DMA, then on again."""
        devfn = IOMMU_DEVFN if s["dev"] == "iommu" else DMA_DEVFN
        self.pci_write(devfn, 0x04, 2, 0x2)
        if s.get("req"):
            self.run_chains(self.rq, s["req"], kick=True, stats=False)
        if s.get("dma"):
            self.op_dma(s["dma"])
        self.pci_write(devfn, 0x04, 2, 0x6)
        if s["dev"] == "iommu":
            self.desync = True

    def op_sysreset(self, s):
        self.qt.outb(0xCF9, 0x06)
        # the reset runs from the main loop: wait for the BARs to be cleared
        for _ in range(1000):
            if self.pci_read(IOMMU_DEVFN, 0x04, 2) & 0x2 == 0:
                break
        self.platform_init()
        self.st["system_resets"] += 1
        self.desync = True

    def op_dma(self, s):
        if s.get("pre"):
            self.run_chains(self.rq, s["pre"], kick=True)
        b = DMA_BAR
        self.qt.w(8, b + R_SRC, s["src"])
        self.qt.w(8, b + R_DST, s["dst"])
        self.qt.w(4, b + R_LEN, s["len"])
        self.qt.w(4, b + R_COUNT, s["count"])
        self.qt.w(4, b + R_PATH, s["path"])
        self.qt.w(4, b + R_CMD, s["cmd"])
        failed = self.qt.r(4, b + R_FAILED)
        name = DMA_CMDS.get(s["cmd"], "?")
        self.st["dma"][name + (":failed" if failed else ":ok")] += 1

    def after_step(self):
        if not self.qt.alive():
            raise QemuGone("QEMU exited")
        self.count_faults()
        st = self.status()
        if st & S_NEEDS_RESET:
            self.st["virtio_errors"] += 1
            self.resync("needs_reset")
        elif self.desync or not st & S_DRIVER_OK:
            self.resync("driver")

    def count_faults(self):
        """Count the faults the device reported and give the event queue
        as many buffers back, as a driver does."""
        n = len(self.collect_used(self.eq))
        self.st["faults_delivered"] += n
        if n and not self.desync:
            self.post_events(n, 64)


def status_name(s):
    if s is None:
        return "none"
    if 0 <= s < len(STATUS_NAMES):
        return STATUS_NAMES[s]
    return "0x%02x" % s


# ---- the step generator --------------------------------------------------

class Gen:
    """The step list of a seed: a function of the seed only."""

    OPS = [("req", 40), ("batch", 7), ("hostile", 10), ("dma", 22), ("evt", 3), ("kick", 2),
           ("jump", 1), ("cfgw", 3), ("cfgr", 1), ("isr", 0.5), ("commonw", 1.5), ("feat", 1),
           ("qreset", 1.5), ("reset", 1), ("bme", 1), ("remap", 0.7), ("sysreset", 0.3)]

    def __init__(self, seed, big_jumps=False):
        self.r = random.Random(seed)
        self.big_jumps = big_jumps
        self.ops = [o for o, _ in self.OPS]
        self.weights = [w for _, w in self.OPS]
        self.maps = []                 # recent MAP ranges, to UNMAP them
        self.dma_dom = 1               # where the last ATTACH put x-dma-test
        self.out = 0
        self.inp = 0
        self.ind = 0

    def steps(self, n):
        return [self.step() for _ in range(n)]

    # -- values --
    def chance(self, p):
        return self.r.random() < p

    def pick(self, *choices):
        return self.r.choice(choices)

    def dom(self):
        if self.chance(0.9):
            return self.pick(1, 1, 1, 2, 2, 3, 4)
        return self.pick(0, 0xFFFFFFFF, 0x80000000, self.r.getrandbits(32))

    def ep(self):
        x = self.r.random()
        if x < 0.6:
            return EP_DMA
        if x < 0.88:
            return self.pick(0x30, 0x20, 0x00, 0xF8, 0xFA, 0x08)
        return self.pick(0x128, 0x10028, 0xFFFF, 0xFFFFFFFF, self.r.getrandbits(32))

    def iova(self):
        return IOVA_BASE + self.r.randrange(IOVA_PAGES) * PAGE

    def vrange(self):
        """(start, end), inclusive."""
        k = self.r.random()
        if k < 0.55:
            s = self.iova()
            return s, s + self.r.randint(1, 4) * PAGE - 1
        if k < 0.7:
            s = self.iova() + self.r.randrange(PAGE)
            return s, s + self.r.randrange(3 * PAGE)
        if k < 0.76:   # reversed
            s = self.iova() + self.r.randint(1, 4) * PAGE
            return s, s - self.r.randint(1, 3 * PAGE)
        if k < 0.8:
            return 0, 2**64 - 1
        if k < 0.85:   # around the 39-bit input range
            b = 1 << 39
            s = b - self.r.randint(0, 2) * PAGE
            return s, s + self.r.randint(1, 4) * PAGE - 1
        if k < 0.89:   # up to the top of the address space
            return 2**64 - self.r.randint(1, 4) * PAGE, 2**64 - 1
        if k < 0.92:
            return IOVA_BASE, IOVA_BASE + (1 << 32)
        if k < 0.95 and self.maps:
            d, s, e = self.r.choice(self.maps)
            return s, e
        s = self.r.getrandbits(64)
        return s, min(s + self.r.getrandbits(16), 2**64 - 1)

    def phys(self):
        k = self.r.random()
        if k < 0.8:
            return DMA_RAM + self.r.randrange(256) * PAGE + (0 if self.chance(0.9) else self.r.randrange(PAGE))
        return self.pick(APIC, IOMMU_BAR, IOMMU_BAR + C_STATUS, IOMMU_BAR + 0x3000,
                         DMA_BAR, DMA_BAR + R_CMD, DMA_BAR + 0x10000, EDU_BAR, HPET,
                         RAM_SIZE, 0x10000000, 2**64 - PAGE, 0, RQ_RING[1], EQ_RING[0],
                         OUT_AREA)

    def mapflags(self):
        return self.pick(3, 3, 3, 3, 1, 2, 0, 7, 5, 6, 4, 8, 0x10, 0x80000003)

    # -- requests --
    def request(self):
        """(bytes, writable length, type, expect an answer)."""
        r = self.r
        kind = r.choices(["attach", "detach", "map", "unmap", "probe", "unknown", "garbage"],
                         [16, 6, 30, 22, 5, 3, 2])[0]
        head_res = bytes(3) if self.chance(0.95) else bytes(r.getrandbits(8) for _ in range(3))
        wlen = 4
        if kind == "attach":
            flags = 0 if self.chance(0.8) else self.pick(1, 1, 2, 3, 0x80000000)
            res = bytes(4) if self.chance(0.9) else r.getrandbits(32).to_bytes(4, "little")
            d, ep = self.dom(), self.ep()
            body = struct.pack("<III", d, ep, flags) + res
            t = T_ATTACH
            if ep == EP_DMA:
                self.dma_dom = d
        elif kind == "detach":
            body = struct.pack("<II", self.dom(), self.ep()) + bytes(8)
            t = T_DETACH
        elif kind == "map":
            d = self.dma_dom if self.chance(0.5) else self.dom()
            s, e = self.vrange()
            body = struct.pack("<IQQQI", d, s & U64, e & U64, self.phys() & U64, self.mapflags())
            t = T_MAP
            self.maps.append((d, s, e))
            self.maps = self.maps[-32:]
        elif kind == "unmap":
            d = self.dom()
            if self.maps and self.chance(0.5):
                d, s, e = r.choice(self.maps)
                if self.chance(0.3):     # partially covering
                    s += PAGE
            else:
                s, e = self.vrange()
            body = struct.pack("<IQQ", d, s & U64, e & U64) + bytes(4)
            t = T_UNMAP
        elif kind == "probe":
            body = struct.pack("<I", self.ep()) + bytes(64)
            t = T_PROBE
            wlen = PROBE_ANSWER
        elif kind == "unknown":
            t = self.pick(0, 6, 7, 0x80, 0xFF)
            body = bytes(r.getrandbits(8) for _ in range(r.randint(0, 40)))
        else:
            t = r.getrandbits(8)
            body = bytes(r.getrandbits(8) for _ in range(r.randint(0, 80)))
        req = bytes([t]) + head_res + body
        x = r.random()
        if x < 0.05:
            req = req[:r.randrange(len(req))]          # truncated
        elif x < 0.09:
            req = req + bytes(r.getrandbits(8) for _ in range(r.randint(1, 64)))
        if self.chance(0.08):
            wlen = self.pick(0, 1, 3, 5, 8, 64, 511, 512, 515, 517, 4096, 65536, 1 << 20)
        expect = len(req) >= 4 and wlen >= 4
        return req, wlen, t, expect

    def c_hazard(self, req):
        """The C device's documented hang (docs/differences.md): it accepts
        a MAP with virt_start > virt_end, and an UNMAP covering it later
        never returns. Domains survive the driver's device reset, so the C
        device is spared the reversed MAP itself (the step is skipped for
        it unless --allow-c-bugs), and the steps that can make it read a
        request the fuzzer did not write (see the callers)."""
        if len(req) >= 36 and req[0] == T_MAP:
            s, e, phys = struct.unpack_from("<QQQ", req, 8)
            if s > e:
                return "reversed-map"
            if phys < EVT_AREA + 0x10000 and phys + (e - s) >= RQ_RING[0]:
                return "map-onto-rings"    # DMA may then rewrite rings and requests
        return None

    def alloc(self, area, n, align=16):
        if area == "out":
            a = OUT_AREA + self.out
            self.out = (self.out + n + align - 1) & ~(align - 1)
            if self.out > 0xF0000:
                self.out = 0
            return a
        a = IN_AREA + self.inp
        self.inp = (self.inp + n + align - 1) & ~(align - 1)
        if self.inp > 0xF0000:
            self.inp = 0
        return a

    def split(self, n, parts):
        if n <= 0:
            return []
        parts = max(1, min(parts, n))
        cuts = sorted(self.r.sample(range(1, n), parts - 1)) if parts > 1 else []
        bounds = [0] + cuts + [n]
        return [bounds[i + 1] - bounds[i] for i in range(parts)]

    def chain(self, req, wlen, t, expect):
        """A well-formed chain for the request: readable then writable
        descriptors, sometimes split, sometimes in an indirect table."""
        r = self.r
        segs = []
        data = []
        rparts = self.split(len(req), 1 if self.chance(0.8) else r.randint(2, 4))
        pos = 0
        for n in rparts:
            a = self.alloc("out", n)
            data.append([a, req[pos:pos + n].hex()])
            segs.append([a, n, 0])
            pos += n
        wsegs = []
        wparts = self.split(wlen, 1 if self.chance(0.85) else r.randint(2, 3))
        for n in wparts:
            if n > 0x10000:
                a = BIG_AREA + r.randrange(0, 0x1000000, PAGE)
            else:
                a = self.alloc("in", n)
            segs.append([a, n, D_WRITE])
            wsegs.append([a, n])
        ch = {"t": t, "e": int(expect), "data": data, "w": wsegs}
        if segs and self.chance(0.1):
            at = IND_AREA + self.ind
            self.ind = (self.ind + 0x1000) % 0xF0000
            tbl = [[a, n, f | (D_NEXT if i + 1 < len(segs) else 0),
                    (i + 1 if i + 1 < len(segs) else None)] for i, (a, n, f) in enumerate(segs)]
            ch["ind"] = [{"at": at, "d": tbl}]
            ch["d"] = [[at, 16 * len(tbl), D_INDIRECT, None]]
        else:
            ch["d"] = [[a, n, f | (D_NEXT if i + 1 < len(segs) else 0),
                        (1 if i + 1 < len(segs) else None)] for i, (a, n, f) in enumerate(segs)]
        return ch

    def req_chain(self, hazards):
        req, wlen, t, expect = self.request()
        h = self.c_hazard(req)
        if h:
            hazards.add(h)
        return self.chain(req, wlen, t, expect)

    def mmio_addr(self):
        return self.pick(IOMMU_BAR, IOMMU_BAR + C_STATUS, IOMMU_BAR + 0x1000, IOMMU_BAR + 0x2000,
                         IOMMU_BAR + 0x3000, APIC, APIC + 0x300, DMA_BAR + R_CMD, DMA_BAR + R_SRC,
                         DMA_BAR + 0x10000, EDU_BAR + 0x4, EDU_BAR + 0x8, EDU_BAR + 0x60,
                         IOAPIC, HPET + 0x10)

    def outside_addr(self):
        return self.pick(RAM_SIZE, RAM_SIZE - 0x800, 0x10000000, 0xFFFFFFFFFFFFF000,
                         2**64 - 2, 1 << 52, 0xFFFFFFFF)

    def hostile(self, hazards):
        """A chain broken one way or another."""
        r = self.r
        ch = self.req_chain(hazards)
        well_formed = ch["e"]
        ch["e"] = 0
        d = ch["d"]
        kind = r.choice(["loop", "long", "beyond", "ind_badlen", "ind_nested", "ind_next",
                         "ind_loop", "ind_addr", "ind_long", "outside", "mmio", "zero",
                         "order", "wo_head", "no_w", "huge_sum", "dup", "straddle",
                         "mmio_w", "mmio_r"])
        ch["h"] = kind
        # flatten to ring descriptors first
        if "ind" in ch:
            tbl = ch.pop("ind")[0]["d"]
            d = [[a, n, f, (1 if nx is not None else None)] for a, n, f, nx in tbl]
        if not d:
            d = [[IN_AREA, 4, D_WRITE, None]]

        def to_indirect(descs):
            at = IND_AREA + self.ind
            self.ind = (self.ind + 0x4000) % 0xF0000
            tbl = [[a, n, f, (i + nx if isinstance(nx, int) else nx)]
                   for i, (a, n, f, nx) in enumerate(descs)]
            ch["ind"] = [{"at": at, "d": tbl}]
            return at, [[at, 16 * len(tbl), D_INDIRECT, None]]

        if kind == "loop":
            k = len(d) - 1
            d[k][2] |= D_NEXT
            d[k][3] = -r.randrange(len(d))
        elif kind == "long":
            n = self.pick(255, 256, 257, 300, 1024, 1025)
            d = [[OUT_AREA + 0x80000 + i, 1, D_NEXT, 1] for i in range(n)]
            d[-1] = [IN_AREA, 4, D_WRITE, None]
        elif kind == "beyond":
            k = r.randrange(len(d))
            d[k][2] |= D_NEXT
            d[k][3] = [self.pick(256, 257, 1023, 1024, 4096, 0xFFFF, r.getrandbits(16))]
        elif kind == "ind_badlen":
            _, d = to_indirect(d)
            d[0][1] = self.pick(0, 1, 8, 15, 17, 16 * len(ch["ind"][0]["d"]) + 8, 0x10000,
                                0x100000, 0xFFFFFFF0)
        elif kind == "ind_nested":
            inner_at = IND_AREA + self.ind
            self.ind = (self.ind + 0x1000) % 0xF0000
            inner = [[a, n, f, (i + nx if isinstance(nx, int) else nx)]
                     for i, (a, n, f, nx) in enumerate(d)]
            at, d = to_indirect([[inner_at, 16 * len(inner), D_INDIRECT, None]])
            ch["ind"].append({"at": inner_at, "d": inner})
        elif kind == "ind_next":
            _, d = to_indirect(d)
            d[0][2] |= D_NEXT
            d[0][3] = 1
            d.append([IN_AREA + 0x100, 4, D_WRITE, None])
        elif kind == "ind_loop":
            _, d = to_indirect(d)
            tbl = ch["ind"][0]["d"]
            tbl[-1][2] |= D_NEXT
            tbl[-1][3] = self.pick(0, len(tbl) - 1, len(tbl), len(tbl) + 5, 0xFFFF)
        elif kind == "ind_addr":
            _, d = to_indirect(d)
            d[0][0] = self.pick(self.mmio_addr(), self.outside_addr())
        elif kind == "ind_long":
            n = self.pick(256, 1024, 1025, 2048)
            at = IND_AREA + 0x80000
            tbl = [[OUT_AREA + 0x80000 + (i % 64), 1, D_NEXT, i + 1] for i in range(n)]
            tbl[-1] = [IN_AREA, 4, D_WRITE, None]
            ch["ind"] = [{"at": at, "d": tbl}]
            d = [[at, 16 * n, D_INDIRECT, None]]
        elif kind == "outside":
            k = r.randrange(len(d))
            d[k][0] = self.outside_addr()
            if self.chance(0.3):
                d[k][1] = self.pick(0x1000, 0x10000, 0xFFFFFFFF)
        elif kind in ("mmio", "mmio_w", "mmio_r"):
            cands = [i for i, x in enumerate(d)
                     if kind == "mmio" or (x[2] & D_WRITE) == (D_WRITE if kind == "mmio_w" else 0)]
            k = r.choice(cands) if cands else r.randrange(len(d))
            d[k][0] = self.mmio_addr()
            if self.chance(0.2):
                d[k][1] = self.pick(1, 2, 8, 0x1000, 0x1001, 0x10000)
        elif kind == "zero":
            d[r.randrange(len(d))][1] = 0
        elif kind == "order":
            d = [[IN_AREA + 0x200, 4, D_WRITE | D_NEXT, 1]] + d
        elif kind == "wo_head":
            for x in d:
                x[2] |= D_WRITE
        elif kind == "no_w":
            d = [x for x in d if not x[2] & D_WRITE] or [[OUT_AREA, 4, 0, None]]
            d[-1][2] &= ~D_NEXT
            d[-1][3] = None
        elif kind == "huge_sum":
            n = self.pick(8, 48, 64)
            rd = [x for x in d if not x[2] & D_WRITE]
            wr = [[0, 0x6000000, D_WRITE | D_NEXT, 1] for _ in range(n)]
            if self.chance(0.5):
                wr = [[0, 0x6000000, D_NEXT, 1] for _ in range(n)] + [[IN_AREA, 4, D_WRITE | D_NEXT, 1]]
                rd = [[OUT_AREA, 4, D_NEXT, 1]] if not rd else rd
            d = rd + wr
            for x in d:
                x[2] |= D_NEXT
                x[3] = 1
            d[-1][2] &= ~D_NEXT
            d[-1][3] = None
            if self.chance(0.3):
                _, d = to_indirect(d)
        elif kind == "dup":
            ch["dup"] = self.pick(1, 2, 255)
            ch["e"] = well_formed
        elif kind == "straddle":
            k = r.randrange(len(d))
            d[k][0] = RAM_SIZE - self.pick(1, 0x10, 0x800)
            d[k][1] = max(d[k][1], 0x1000)
        # a device-readable buffer moved to MMIO, past the end of RAM or
        # onto other RAM: the device reads bytes the fuzzer did not write,
        # which can make a reversed MAP (C device hazard)
        if kind in ("ind_addr", "huge_sum") or (
                kind in ("mmio", "mmio_r", "outside", "straddle") and not d[k][2] & D_WRITE):
            hazards.add("request-not-written")
        # make NEXT flags and links consistent where the mutation left them
        for x in d:
            if x[3] is None:
                x[2] &= ~D_NEXT
        ch["d"] = d
        return ch

    # -- steps --
    def step(self):
        op = self.r.choices(self.ops, self.weights)[0]
        s = getattr(self, "gen_" + op)()
        s["op"] = s.get("op", op)
        return s

    def with_hazards(self, s, hazards):
        if hazards:
            s["cbug"] = sorted(hazards)[0]
        return s

    def gen_req(self):
        hz = set()
        s = {"op": "req", "c": [self.req_chain(hz)]}
        if self.chance(0.05):
            s["kick"] = 0
        return self.with_hazards(s, hz)

    def gen_batch(self):
        hz = set()
        n = self.r.randint(2, 8)
        c = [self.req_chain(hz) if self.chance(0.9) else self.hostile(hz) for _ in range(n)]
        if any("h" in ch for ch in c):
            for ch in c:       # a broken chain may break the device, or overwrite the others
                ch["e"] = 0
        broken = False
        for ch in c:
            broken = broken or not ch["e"]
            if broken:         # after a chain that may put the device in NEEDS_RESET
                ch["e"] = 0
        return self.with_hazards({"op": "req", "c": c}, hz)

    def gen_hostile(self):
        hz = set()
        return self.with_hazards({"op": "req", "c": [self.hostile(hz)]}, hz)

    def dma_addr(self):
        k = self.r.random()
        good = [(s, e) for d, s, e in self.maps
                if s <= e and e - s < 1 << 24 and d == self.dma_dom]
        if k < 0.5 and good:
            s, e = self.r.choice(good)
            return self.r.randint(s, e) if self.chance(0.3) else s
        if k < 0.75:
            return self.iova() + (0 if self.chance(0.5) else self.r.randrange(PAGE))
        if k < 0.85:
            return DMA_RAM + self.r.randrange(256) * PAGE
        return self.pick(APIC, IOMMU_BAR, DMA_BAR, EDU_BAR, 1 << 39, 2**64 - 0x10,
                         0xFFFFFFFFF000, 0)

    def well_formed(self, req, wlen=4):
        t = req[0]
        return self.chain(req, wlen, t, True)

    def gen_dma(self):
        s = {}
        if self.chance(0.5):
            # a driver's way: attach x-dma-test, map a window, then DMA in it
            hz = set()
            d = self.dma_dom if self.chance(0.7) else self.dom()
            self.dma_dom = d
            s["pre"] = []
            if self.chance(0.5):
                s["pre"].append(self.well_formed(struct.pack("<BxxxIII4x", T_ATTACH, d, EP_DMA, 0)))
            iova = self.iova()
            n = self.r.randint(1, 8) * PAGE
            req = struct.pack("<BxxxIQQQI", T_MAP, d, iova, iova + n - 1,
                              DMA_RAM + self.r.randrange(0, 0x80000, PAGE),
                              self.pick(3, 3, 3, 3, 3, 3, 3, 1, 2, 7))
            self.maps.append((d, iova, iova + n - 1))
            self.maps = self.maps[-32:]
            s["pre"].append(self.well_formed(req))
            s["cmd"] = self.pick(3, 3, 3, 1, 2, 4)
            so, do = self.r.randrange(0, n, 0x100), self.r.randrange(0, n, 0x100)
            s["src"], s["dst"] = iova + so, iova + do
            s["len"] = self.r.randint(1, n - max(so, do)) if self.chance(0.9) else n
            s["count"] = 1
            s["path"] = self.pick(0, 1)
            return s
        cmd = self.r.choices([3, 1, 2, 4, 5, 6, 7], [70, 8, 8, 4, 4, 3, 3])[0]
        length = self.pick(1, 4, 8, 0x100, 0x100, 0x800, 0x1000, 0x1000, 0x1001, 0x2000,
                           0x3000, 0x10000, self.r.randint(1, 0x4000), 0, 0x20000)
        return {"cmd": cmd, "src": self.dma_addr(), "dst": self.dma_addr(), "len": length,
                "count": 1 if self.chance(0.85) else self.r.randint(2, 4),
                "path": 0 if self.chance(0.6) else 1}

    def gen_evt(self):
        c = []
        for _ in range(self.r.randint(1, 8)):
            k = self.r.random()
            if k < 0.7:
                c.append({"d": [[EVT_AREA + self.r.randrange(256) * 0x100,
                                 self.pick(24, 32, 64, 0x100), D_WRITE, None]]})
            elif k < 0.8:
                c.append({"d": [[EVT_AREA, self.pick(0, 1, 8, 23), D_WRITE, None]]})
            elif k < 0.87:
                c.append({"d": [[EVT_AREA, 64, 0, None]]})      # device-readable
            elif k < 0.95:
                c.append({"d": [[self.mmio_addr(), self.pick(24, 64, 0x1000), D_WRITE, None]]})
            else:
                c.append({"d": [[self.outside_addr(), 64, D_WRITE, None]]})
        return {"c": c, "kick": 1 if self.chance(0.9) else 0}

    def gen_kick(self):
        return {"q": self.pick(0, 0, 1, 1, 2, 3, 255, 1023), "size": self.pick(2, 2, 1, 4),
                "val": self.pick(0, 1, 2, 0xFFFF)}

    def gen_jump(self):
        # stale ring entries name chains since overwritten in part: the
        # device may read any request, a reversed MAP too (C device hazard)
        if self.big_jumps and self.chance(0.3):
            return {"by": self.pick(0x8000, 0xFFFF), "cbug": "stale-replay"}
        return {"by": self.pick(self.r.randint(1, 255), self.r.randint(1, 255), 257, 300, 1000),
                "cbug": "stale-replay"}

    def gen_cfgw(self):
        if self.chance(0.6):
            return {"off": 36, "size": 1, "val": self.pick(0, 1, 0, 1, 2, 0xFF)}
        size = self.pick(1, 2, 4, 8)
        return {"off": self.r.randrange(0, 48), "size": size, "val": self.r.getrandbits(8 * size)}

    def gen_cfgr(self):
        return {"off": self.r.randrange(0, 48), "size": self.pick(1, 2, 4, 8)}

    def gen_isr(self):
        return {}

    def plain_req(self):
        hz = set()
        ch = self.req_chain(hz)
        return [ch], hz

    def gen_commonw(self):
        w = []
        for _ in range(self.r.randint(1, 3)):
            off = self.pick(C_DFSELECT, C_GFSELECT, C_GF, C_MSIX, C_STATUS, C_QSEL, C_QSIZE,
                            C_QMSIX, C_QENABLE, C_QDESC, C_QDRIVER, C_QDEVICE, C_QNDATA,
                            C_QRESET, self.r.randrange(64))
            size = {C_GF: 4, C_DFSELECT: 4, C_GFSELECT: 4, C_QDESC: 4, C_QDRIVER: 4,
                    C_QDEVICE: 4, C_STATUS: 1}.get(off, 2)
            val = self.pick(0, 1, 2, 0xFF, 0xFFFF, 1024, 3, self.r.getrandbits(8 * size))
            w.append([off, size, val])
        req, hz = self.plain_req()
        hz.add("ring-moved")        # a queue address written: the ring may be any bytes
        return self.with_hazards({"w": w, "req": req}, hz)

    def gen_feat(self):
        req, hz = self.plain_req()
        return self.with_hazards({"sel": self.pick(0, 1, 2, 0xFFFFFFFF),
                                  "val": self.r.getrandbits(32),
                                  "status": self.pick(None, None, 0xF, 0x7, 0xB, 0x4F, 0x8F,
                                                      0xFF),
                                  "req": req}, hz)

    def gen_qreset(self):
        return {"q": self.pick(0, 0, 1), "kick_while": int(self.chance(0.5)),
                "reenable": int(self.chance(0.9)),
                "qs": self.pick(256, 256, 128, 16, 1, 3, 1024)}

    def gen_reset(self):
        if self.chance(0.6):
            return {"v": {}}
        v = {}
        if self.chance(0.5):
            v["qs"] = [self.pick(256, 128, 64, 16, 4, 2, 1, 3, 255, 1024, 2048),
                       self.pick(256, 16, 1, 1024)]
        if self.chance(0.4):
            v["feat"] = DEFAULT_FEATURES ^ (1 << self.pick(28, 29, 32, 40, 0, 1, 2, 3, 4, 5, 6))
        if self.chance(0.1):
            v["feat"] = self.r.getrandbits(64)
            v["raw"] = True
        if self.chance(0.3):
            v["evt"] = self.pick(0, 1, 64, 256)
            v["evt_len"] = self.pick(24, 64, 8)
        return {"v": v}

    def gen_bme(self):
        s = {"dev": self.pick("iommu", "dma")}
        if s["dev"] == "iommu":
            req, hz = self.plain_req()
            s["req"] = req
            self.with_hazards(s, hz)
        else:
            s["dma"] = self.gen_dma()
        return s

    def gen_remap(self):
        def addr():
            return self.pick(self.mmio_addr(), self.outside_addr(), OUT_AREA, RQ_RING[0] + 8,
                             EQ_RING[0], 0, 0xFFFFFFFFFFFFF000)
        return {"q": self.pick(0, 1), "desc": addr(), "avail": addr(), "used": addr(),
                "qs": self.pick(None, 256, 1, 1024, 4096), "cbug": "ring-moved"}

    def gen_sysreset(self):
        return {}


# ---- running -------------------------------------------------------------

def new_stats():
    return {
        "steps": 0, "skipped_c_bugs": 0, "virtio_errors": 0, "resyncs": 0, "answers": 0,
        "unkicked": 0, "faults_delivered": 0, "system_resets": 0, "setup_refused": 0,
        "requests": collections.Counter(), "dma": collections.Counter(),
        "anomalies": collections.Counter(), "messages": collections.Counter(),
        "op_time": collections.Counter(), "op_count": collections.Counter(),
        "rss_by_op": collections.Counter(), "slowest": (0.0, None, None), "spikes": [],
        "rss_sum": 0, "rss_floor": 0,
        "rss_start": 0, "rss_end": 0, "anon_start": 0, "anon_end": 0, "seconds": 0.0,
        "failures": [], "known_c_bugs": [],
    }


class StatsDict(dict):
    """A dict whose unknown counters start at 0 (resync_<why>)."""

    def __missing__(self, k):
        return 0


def qemu_argv(opts, device):
    dev = DEVICES[device]
    props = (opts.props or "")
    argv = [opts.qemu, "-M", "q35", "-accel", "qtest", "-display", "none", "-nodefaults",
            "-m", "%dM" % (RAM_SIZE >> 20),
            "-device", "%s,addr=04.0,id=viommu%s%s" % (dev, DEVICE_PROPS.get(device, ""), props),
            "-device", "x-dma-test,addr=05.0,id=dma",
            "-device", "edu,addr=06.0"]
    return argv


def scan_stderr(path, st):
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    found = []
    for kind, pat in FAILURE_PATTERNS:
        m = pat.search(text)
        if m:
            line = text[text.rfind("\n", 0, m.start()) + 1:text.find("\n", m.end())]
            found.append("%s: %s" % (kind, line.strip()[:300]))
    for line in text.splitlines():
        msg = re.sub(r"^\S*qemu-system-\w+: ", "", line)
        msg = re.sub(r"0x[0-9a-fA-F]+|\d+", "N", msg)
        st["messages"][msg[:120]] += 1
    return found


def run_steps(device, steps, opts, label, outdir, deadline=None):
    """Run @steps against @device in a fresh QEMU. Returns the stats; a
    failure is in stats['failures'] with the index of the step."""
    st = StatsDict(new_stats())
    rundir = os.path.join(outdir, label)
    os.makedirs(rundir, exist_ok=True)
    errpath = os.path.join(rundir, "qemu-stderr.txt")
    tmp = tempfile.mkdtemp(prefix="fuzz-qemu-")
    t0 = time.monotonic()
    qt = None
    failed_at = None
    try:
        argv = qemu_argv(opts, device)
        with open(os.path.join(rundir, "cmdline.txt"), "w") as f:
            f.write(" ".join(argv) + "\n")
        tracing = getattr(opts, "compare", False)
        qt = QTest(argv, errpath, opts.timeout, tmp, getattr(opts, "mem_limit_mb", 0),
                   qmp=tracing)
        drv = Driver(qt, st)
        if tracing:
            drv.trace = st["trace"] = []
        drv.log = open(os.path.join(rundir, "anomalies.txt"), "w")
        drv.platform_init()
        # make every page of guest RAM resident: RSS then measures QEMU itself
        for a in range(0, RAM_SIZE, 16 << 20):
            qt.memset(a, 16 << 20, 0)
        if not drv.setup():
            raise RunFailure("device does not reach DRIVER_OK")
        drv.canary()
        # RSS growth is charged to the step that caused it, from a third of
        # the run on (the allocator's high-water mark is mostly reached by
        # then). A step that grows it by more than SPIKE_KIB is a spike, not
        # a leak: a notify that answers many requests switching address
        # spaces (a jumped avail index, a chain made available 256 times)
        # rebuilds QEMU's FlatViews once per switch, and the old ones are
        # freed only after an RCU grace period, after the notify: the peak
        # raises the allocator's high-water mark. A leak grows a little with
        # every step.
        warmup = len(steps) // 3
        anon = 0
        for i, s in enumerate(steps):
            if i == warmup:
                st["rss_start"], st["anon_start"] = qt.rss()
                anon = st["anon_start"]
            if deadline and time.monotonic() > deadline:
                st["truncated"] = True
                break
            failed_at = i
            drv.cur_step = i
            if device == "c" and s.get("cbug") and not opts.allow_c_bugs:
                st["skipped_c_bugs"] += 1
                continue
            t1 = time.monotonic()
            drv.step(s)
            drv.after_step()
            if drv.trace is not None:
                drv.trace.append(drv.observe())
            dt = time.monotonic() - t1
            st["op_time"][s["op"]] += dt
            if dt > st["slowest"][0]:
                st["slowest"] = (dt, i, s["op"])
            st["op_count"][s["op"]] += 1
            st["steps"] += 1
            if i >= warmup:
                now = qt.rss()[1]
                if now - anon > SPIKE_KIB:
                    st["spikes"].append((now - anon, i, s["op"]))
                else:
                    st["rss_by_op"][s["op"]] += now - anon
                    st["rss_sum"] += now - anon
                    st["rss_floor"] = min(st["rss_floor"], st["rss_sum"])
                anon = now
            if opts.verbose and (i % 50 == 0 or opts.verbose_all):
                print("   step %d %s rss %s" % (i, s["op"], qt.rss()), flush=True)
        failed_at = None
        drv.count_faults()
        drv.setup()
        drv.canary()
        if drv.trace is not None:
            st["copied"] = qt.qmp_cmd("qom-get", path="/machine/peripheral/viommu",
                                      property="counters")["requests-copied"]
        if not st["rss_start"]:
            st["rss_start"], st["anon_start"] = qt.rss()
        st["rss_end"], st["anon_end"] = qt.rss()
        growth = leak_growth(st)
        if len(steps) >= 200 and growth > opts.rss_limit_mb:
            st["failures"].append({"kind": "leak", "step": None,
                                   "what": "RssAnon grew by %.1f MiB in steps of less than "
                                           "%d KiB each (limit %d MiB; by step kind, KiB: %s)"
                                           % (growth, SPIKE_KIB, opts.rss_limit_mb,
                                              dict(st["rss_by_op"].most_common(5)))})
    except QemuHang as e:
        bt = os.path.join(rundir, "hang-backtrace.txt")
        if qt and not getattr(opts, "no_backtrace", False):
            qt.backtrace(bt)
        if device == "c" and not opts.allow_c_bugs and known_c_hang(bt):
            # a reversed mapping the C device took from a stale or garbage
            # chain (a jumped avail index, a ring moved onto other data)
            st["known_c_bugs"].append({"kind": "hang", "step": failed_at,
                                       "what": "known C bug: UNMAP loop (%s)" % e})
        else:
            st["failures"].append({"kind": "hang", "step": failed_at, "what": str(e)})
    except QemuGone as e:
        time.sleep(0.2)
        rc = qt.proc.poll() if qt else None
        what = str(e)
        if rc is not None:
            what += (" (killed by signal %d)" % -rc) if rc < 0 else (" (exit status %d)" % rc)
        st["failures"].append({"kind": "crash", "step": failed_at, "what": what})
    except RunFailure as e:
        st["failures"].append({"kind": "stuck", "step": failed_at, "what": str(e)})
    finally:
        if qt:
            qt.close()
        shutil.rmtree(tmp, ignore_errors=True)
    for f in scan_stderr(errpath, st):
        st["failures"].append({"kind": "stderr", "step": None, "what": f})
    st["seconds"] = time.monotonic() - t0
    return st


def leak_growth(st):
    """MiB the RSS grew, in steps under SPIKE_KIB each, since its lowest
    point (the allocator gives memory back after a peak now and then)."""
    return (st["rss_sum"] - st["rss_floor"]) / 1024


def known_c_hang(bt_path):
    """Whether the hung main thread is in the C device's UNMAP loop over a
    reversed mapping (docs/differences.md)."""
    try:
        with open(bt_path) as f:
            text = f.read()
    except OSError:
        return False
    main = text[text.find("Thread 1 "):]
    return "virtio_iommu_unmap (" in main and "virtio-iommu.c" in main


def fail_kinds(st):
    return sorted({f["kind"] for f in st["failures"]})


def minimize(device, steps, opts, label, outdir, kinds, budget):
    """Drop chunks of steps, then chains of the steps left, while the run
    still fails the same way (ddmin-like, within a time budget)."""
    t_end = time.monotonic() + budget
    cur = [dict(s) for s in steps]
    tries = 0
    opts.no_backtrace = True

    def fails(cand):
        nonlocal tries
        tries += 1
        st = run_steps(device, cand, opts, label + "-min", outdir)
        return bool(set(fail_kinds(st)) & set(kinds))

    n = 2
    while len(cur) >= 2 and time.monotonic() < t_end:
        chunk = max(1, len(cur) // n)
        reduced = False
        for start in range(0, len(cur), chunk):
            if time.monotonic() > t_end:
                break
            cand = cur[:start] + cur[start + chunk:]
            if cand and fails(cand):
                cur = cand
                n = max(n - 1, 2)
                reduced = True
                break
        if not reduced:
            if chunk == 1:
                break
            n = min(n * 2, len(cur))
    for i in range(len(cur)):
        for key in ("c", "pre", "req"):
            k = 0
            while isinstance(cur[i].get(key), list) and len(cur[i][key]) > 1 \
                    and k < len(cur[i][key]) and time.monotonic() < t_end:
                cand = [dict(s) for s in cur]
                cand[i][key] = cur[i][key][:k] + cur[i][key][k + 1:]
                if fails(cand):
                    cur = cand
                else:
                    k += 1
    opts.no_backtrace = False
    shutil.rmtree(os.path.join(outdir, label + "-min"), ignore_errors=True)
    return cur, tries


def merge(total, st):
    for k, v in st.items():
        if isinstance(v, collections.Counter):
            total.setdefault(k, collections.Counter()).update(v)
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and not k.startswith(("rss", "anon")):
            total[k] = total.get(k, 0) + v
    total.setdefault("growth", []).append(leak_growth(st) if st["anon_end"] else None)
    total.setdefault("spikes", []).extend(st["spikes"])
    total.setdefault("failed", []).extend(st["failures"])
    total.setdefault("failures", [])


def print_summary(device, total, runs):
    secs = total.get("seconds", 0) or 1e-9
    steps = total.get("steps", 0)
    print("== %s (%s): %d run(s), %d steps in %.1f s (%.0f steps/s)"
          % (device, DEVICES[device], runs, steps, secs, steps / secs))
    print("   answers %d, virtio_error resets %d, driver resyncs %d, faults delivered %d, "
          "system resets %d" % (total.get("answers", 0), total.get("virtio_errors", 0),
                                total.get("resyncs", 0) - total.get("virtio_errors", 0),
                                total.get("faults_delivered", 0), total.get("system_resets", 0)))
    if device == "c":
        print("   known C-device bug (reversed MAP, UNMAP loop): %d step(s) skipped, %d run(s) "
              "stopped by its hang" % (total.get("skipped_c_bugs", 0), total.get("known_c_bugs", 0)))
    req = total.get("requests", collections.Counter())
    if req:
        print("   requests: " + ", ".join("%s %d" % kv for kv in sorted(req.items())))
    dma = total.get("dma", collections.Counter())
    if dma:
        print("   dma: " + ", ".join("%s %d" % kv for kv in sorted(dma.items())))
    an = total.get("anomalies", collections.Counter())
    if an:
        print("   anomalies: " + "; ".join("%s x%d" % kv for kv in sorted(an.items())))
    g = [x for x in total.get("growth", []) if x is not None]
    if g:
        sp = total.get("spikes", [])
        print("   RssAnon growth per run (last 2/3, steps under 1 MiB): max %.1f MiB, mean %.1f MiB; "
              "%d peak step(s), largest %+.0f MiB (%s)"
              % (max(g), sum(g) / len(g), len(sp), max(sp)[0] / 1024 if sp else 0,
                 max(sp)[2] if sp else "-"))
    failed = total.get("failed", [])
    print("   failures: %d%s" % (len(failed), "".join(
        "\n     %s at step %s: %s" % (f["kind"], f["step"], f["what"]) for f in failed[:10])))
    ot, oc = total.get("op_time", {}), total.get("op_count", {})
    if ot:
        print("   ms/step by op: " + ", ".join("%s %.2f (%d)" % (k, 1000 * ot[k] / oc[k], oc[k])
                                                for k in sorted(ot)))
    msgs = total.get("messages", collections.Counter())
    if msgs:
        top = msgs.most_common(8)
        print("   QEMU messages: " + "; ".join("%r x%d" % kv for kv in top))


def compare_traces(a, b, names):
    """Where two runs of the same steps first differ in what the driver saw
    (Driver.observe), described; None when they saw the same."""
    def show(v, w):
        if isinstance(v, str) and isinstance(w, str):
            at = next((i for i, (x, y) in enumerate(zip(v, w)) if x != y), min(len(v), len(w)))
            return "byte %d: %s vs %s" % (at // 2, v[at & ~1:(at & ~1) + 32] or "-",
                                          w[at & ~1:(at & ~1) + 32] or "-")
        return "%s vs %s" % (str(v)[:200], str(w)[:200])
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            diffs = ["%s (%s / %s) %s" % (k, names[0], names[1], show(x.get(k), y.get(k)))
                     for k in sorted(set(x) | set(y)) if x.get(k) != y.get(k)]
            return "after step %d: %s" % (i, "; ".join(diffs))
    if len(a) != len(b):
        return "one run stopped early (%d and %d steps)" % (len(a), len(b))
    return None


def parse_seeds(opts):
    if opts.seed is not None:
        return [opts.seed]
    a, _, b = opts.seeds.partition("-")
    return list(range(int(a), int(b or a) + 1))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default_qemu = os.path.join(os.path.dirname(here), "build", "bin", "qemu-system-x86_64")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="1-4", help="seed range A-B (default 1-4)")
    p.add_argument("--seed", type=int, help="a single seed")
    p.add_argument("--steps", type=int, default=2000, help="steps per seed (default 2000)")
    p.add_argument("--device", choices=["rs", "c", "rs-map", "both"], default="both")
    p.add_argument("--compare", action="store_true",
                   help="run each seed on virtio-iommu-rs with its two request paths (copied, "
                        "and mapped by virtqueue_pop: x-copy-requests=off) and fail when the "
                        "driver sees any difference: answers, used rings, device status, the "
                        "virtio core's queue state")
    p.add_argument("--arch", choices=["x86_64"], default="x86_64")
    p.add_argument("--qemu", default=default_qemu)
    p.add_argument("--props", default="", help="extra -device properties, e.g. ,aw-bits=48")
    p.add_argument("--time-budget", type=float, default=0,
                   help="stop starting runs (and stepping) after this many seconds")
    p.add_argument("--timeout", type=float, default=10, help="seconds before a hang")
    p.add_argument("--rss-limit-mb", type=float, default=16,
                   help="RssAnon growth over the last two thirds of a run, in steps "
                        "that each grow it by less than 1 MiB, counted as a leak (MiB)")
    p.add_argument("--big-jumps", action="store_true",
                   help="also move the avail index 32768 and 65535 entries ahead (QEMU then "
                        "answers that many stale entries in one notify: gigabytes, seconds)")
    p.add_argument("--mem-limit-mb", type=int, default=4096,
                   help="address-space limit of QEMU (RLIMIT_AS): a runaway allocation "
                        "aborts QEMU (a failure) instead of exhausting the host")
    p.add_argument("--allow-c-bugs", action="store_true",
                   help="do not skip the documented C-device hang sequences")
    p.add_argument("--out", default=None, help="logs (default: a new directory in /tmp)")
    p.add_argument("--replay", help="run a saved step list (steps.json) instead of seeds")
    p.add_argument("--minimize", action="store_true",
                   help="shrink the step list of a failing run (then saved as min-steps.json)")
    p.add_argument("--minimize-budget", type=float, default=600)
    p.add_argument("--verbose", "-v", action="store_true")
    p.add_argument("--verbose-all", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--keep-steps", action="store_true", help="save every run's step list")
    opts = p.parse_args()
    if not os.path.exists(opts.qemu):
        sys.exit("no QEMU at %s (make build)" % opts.qemu)
    out = opts.out or tempfile.mkdtemp(prefix="fuzz-qemu-out-")
    os.makedirs(out, exist_ok=True)
    if opts.compare:
        devices = ["rs", "rs-map"]
    else:
        devices = ["rs", "c"] if opts.device == "both" else [opts.device]
    deadline = time.monotonic() + opts.time_budget if opts.time_budget else None

    if opts.replay:
        with open(opts.replay) as f:
            saved = json.load(f)
        jobs = [("replay", saved["steps"])]
    else:
        jobs = [(seed, None) for seed in parse_seeds(opts)]

    totals = {d: {} for d in devices}
    runs = {d: 0 for d in devices}
    failures = []
    t0 = time.monotonic()
    for seed, steps in jobs:
        if deadline and time.monotonic() > deadline:
            break
        if steps is None:
            steps = Gen(seed, opts.big_jumps).steps(opts.steps)
        traces, copied = {}, {}
        for dev in devices:
            if deadline and time.monotonic() > deadline:
                break
            label = "%s-seed%s" % (dev, seed)
            st = run_steps(dev, steps, opts, label, out, deadline)
            if opts.compare:
                traces[dev] = st.pop("trace", [])
                copied[dev] = st.pop("copied", 0)
                if len(traces) == 2 and not st["failures"] and not st.get("truncated"):
                    diff = compare_traces(traces["rs"], traces[dev], ("copied", "mapped"))
                    if not diff and (not copied["rs"] or copied[dev]):
                        diff = ("(requests copied: %d with x-copy-requests=on, %d with off)"
                                % (copied["rs"], copied[dev]))
                    if diff:
                        st["failures"].append({"kind": "divergence", "step": None,
                                               "what": "the request paths differ " + diff})
                    else:
                            print("     %d requests took the copy path with x-copy-requests=on; "
                              "all %d steps observed alike with it off"
                              % (copied["rs"], len(traces[dev])))
            runs[dev] += 1
            merge(totals[dev], st)
            rundir = os.path.join(out, label)
            if st["failures"] or st["known_c_bugs"] or opts.keep_steps:
                last = max([f["step"] for f in st["failures"] if f["step"] is not None],
                           default=len(steps) - 1)
                with open(os.path.join(rundir, "steps.json"), "w") as f:
                    json.dump({"seed": seed, "device": dev, "steps": steps[:last + 1],
                               "allow_c_bugs": opts.allow_c_bugs}, f)
            status = "ok"
            if st["known_c_bugs"]:
                k = st["known_c_bugs"][0]
                status = "ok, stopped at step %s by a known C-device bug (%s)" % (k["step"], k["what"])
                totals[dev]["known_c_bugs"] = totals[dev].get("known_c_bugs", 0) + 1
            if st["failures"]:
                status = "FAILED: " + "; ".join("%s at step %s: %s" % (f["kind"], f["step"], f["what"])
                                                for f in st["failures"])
            g = leak_growth(st)
            spike = max(st["spikes"], default=(0, None, None))
            print("%-4s seed %-6s %5d steps %6.1f s  resets %3d  rss %+5.1f MiB (peak step %+.0f MiB)"
                  "  %s" % (dev, seed, st["steps"], st["seconds"], st["virtio_errors"], g,
                           spike[0] / 1024, status), flush=True)
            if st["failures"]:
                failures.append((label, st["failures"]))
                if opts.minimize:
                    last = max([f["step"] for f in st["failures"] if f["step"] is not None],
                               default=len(steps) - 1)
                    small, tries = minimize(dev, steps[:last + 1], opts, label, out,
                                            fail_kinds(st), opts.minimize_budget)
                    with open(os.path.join(rundir, "min-steps.json"), "w") as f:
                        json.dump({"seed": seed, "device": dev, "steps": small,
                                   "allow_c_bugs": opts.allow_c_bugs}, f, indent=1)
                    print("     minimized to %d step(s) in %d tries: %s"
                          % (len(small), tries, os.path.join(rundir, "min-steps.json")))
    print()
    for dev in devices:
        print_summary(dev, totals[dev], runs[dev])
    print("total %.1f s; logs in %s" % (time.monotonic() - t0, out))
    if failures:
        print("FAILED runs: " + ", ".join(l for l, _ in failures))
        sys.exit(1)
    print("all runs passed")


if __name__ == "__main__":
    main()
