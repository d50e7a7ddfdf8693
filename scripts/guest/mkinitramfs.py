#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Pack the functional-test initramfs: busybox, /init, and the kernel modules
asked for plus their dependencies, decompressed, in a load order.

Debian's linux-image package ships its modules xz-compressed and without
modules.dep (depmod runs at install time, which we never do), so the
dependencies are read from each module's own `.modinfo` ELF section
(`depends=`) and the load order is computed here. The order is checked:
every dependency must be either loaded earlier or built into the kernel
(modules.builtin), otherwise the build fails instead of the guest. With
--arch, every module and busybox must be built for that architecture
(ELF e_machine), so a guest cannot get another arch's binaries.

The archive is written directly (cpio "newc" + gzip) rather than with the
cpio tool: no root is needed for the /dev/console node the kernel opens
before /init runs, the host needs no cpio package, and fixed timestamps
and ownership make the image byte-for-byte reproducible."""

import argparse
import gzip
import lzma
import os
import struct
import sys


def modinfo(ko):
    """The key=value strings of an ELF64 module's .modinfo section."""
    if ko[:4] != b"\x7fELF" or ko[4] != 2 or ko[5] != 1:
        raise ValueError("not a little-endian ELF64 module")
    shoff, = struct.unpack_from("<Q", ko, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", ko, 0x3A)

    def section(i):
        base = shoff + i * shentsize
        name, = struct.unpack_from("<I", ko, base)
        offset, size = struct.unpack_from("<QQ", ko, base + 0x18)
        return name, offset, size

    _, stroff, _ = section(shstrndx)
    for i in range(shnum):
        name, offset, size = section(i)
        end = ko.index(b"\0", stroff + name)
        if ko[stroff + name:end] == b".modinfo":
            info = {}
            for item in ko[offset:offset + size].split(b"\0"):
                if b"=" in item:
                    key, _, value = item.decode().partition("=")
                    info.setdefault(key, []).append(value)
            return info
    raise ValueError("no .modinfo section")


# Debian architecture -> ELF e_machine.
ELF_MACHINE = {"amd64": 62, "arm64": 183}  # EM_X86_64, EM_AARCH64


def check_machine(data, arch, what):
    """Fail the build unless `data` is an ELF64 little-endian file for `arch`."""
    if arch is None:
        return
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise SystemExit(f"mkinitramfs: {what} is not a little-endian ELF64 file")
    machine, = struct.unpack_from("<H", data, 0x12)
    if machine != ELF_MACHINE[arch]:
        raise SystemExit(f"mkinitramfs: {what} is for ELF machine {machine}, not {arch} "
                         f"({ELF_MACHINE[arch]})")


def norm(name):
    # Module names treat '-' and '_' alike (virtio-iommu.ko is virtio_iommu).
    return name.replace("-", "_")


def index_modules(moddir):
    """Map module name -> path of its .ko(.xz) under moddir/kernel."""
    found = {}
    for dirpath, _, files in os.walk(os.path.join(moddir, "kernel")):
        for f in files:
            for ext in (".ko.xz", ".ko"):
                if f.endswith(ext):
                    found[norm(f[:-len(ext)])] = os.path.join(dirpath, f)
    return found


def builtin_modules(moddir):
    names = set()
    with open(os.path.join(moddir, "modules.builtin")) as f:
        for line in f:
            names.add(norm(os.path.basename(line.strip())[:-len(".ko")]))
    return names


def load_order(roots, available, builtin, arch=None):
    """Depth-first, dependencies first, roots in the order given (so the
    first root, virtio_iommu, and its own dependencies load before any
    endpoint driver). Returns [(name, decompressed bytes)]."""
    order, seen, stack = [], set(), []

    def visit(name):
        if name in seen or name in builtin:
            return
        if name in stack:
            raise SystemExit(f"mkinitramfs: dependency cycle: {' -> '.join(stack + [name])}")
        if name not in available:
            raise SystemExit(f"mkinitramfs: module {name} is neither shipped nor built in")
        stack.append(name)
        path = available[name]
        data = open(path, "rb").read()
        if path.endswith(".xz"):
            data = lzma.decompress(data)
        check_machine(data, arch, path)
        info = modinfo(data)
        deps = [norm(d) for v in info.get("depends", []) for d in v.split(",") if d]
        for d in deps:
            visit(d)
        soft = info.get("softdep", [])
        if soft:
            print(f"mkinitramfs: note: {name} has softdep {soft} (not loaded)", file=sys.stderr)
        stack.pop()
        seen.add(name)
        order.append((name, data, deps))

    for r in roots:
        visit(norm(r))
    # Re-check the property /init relies on, independently of the walk.
    loaded = set()
    for name, _, deps in order:
        for d in deps:
            if d not in loaded and d not in builtin:
                raise SystemExit(f"mkinitramfs: {name} needs {d}, which is not loaded before it")
        loaded.add(name)
    return [(n, data) for n, data, _ in order]


class Cpio:
    """Minimal writer of the SVR4 "newc" format the kernel unpacks."""

    def __init__(self):
        self.parts = []
        self.ino = 1

    def add(self, name, mode, data=b"", rdev=(0, 0)):
        namez = name.encode() + b"\0"
        hdr = "070701" + "".join("%08X" % v for v in (
            self.ino, mode, 0, 0, 2 if mode & 0o040000 else 1, 0, len(data),
            0, 0, rdev[0], rdev[1], len(namez), 0))
        self.ino += 1
        self.parts += [hdr.encode(), namez, b"\0" * (-(110 + len(namez)) % 4),
                       data, b"\0" * (-len(data) % 4)]

    def dir(self, name):
        self.add(name, 0o040755)

    def file(self, name, data, perm=0o644):
        self.add(name, 0o100000 | perm, data)

    def symlink(self, name, target):
        self.add(name, 0o120777, target.encode())

    def chardev(self, name, major, minor, perm=0o600):
        self.add(name, 0o020000 | perm, rdev=(major, minor))

    def bytes(self):
        self.add("TRAILER!!!", 0)
        return b"".join(self.parts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=sorted(ELF_MACHINE),
                    help="check that modules and busybox are built for this architecture")
    ap.add_argument("--modules-dir", required=True)
    ap.add_argument("--busybox", required=True)
    ap.add_argument("--init", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("modules", nargs="+")
    a = ap.parse_args()

    mods = load_order(a.modules, index_modules(a.modules_dir), builtin_modules(a.modules_dir),
                      a.arch)
    busybox = open(a.busybox, "rb").read()
    check_machine(busybox, a.arch, a.busybox)
    print("mkinitramfs: load order: " + " ".join(n for n, _ in mods), file=sys.stderr)

    c = Cpio()
    for d in (".", "bin", "sbin", "dev", "proc", "sys", "tmp", "etc", "lib", "lib/modules"):
        c.dir(d)
    # The kernel opens /dev/console for /init's stdio before /init can mount
    # devtmpfs; without this node /init would run with no output at all.
    c.chardev("dev/console", 5, 1)
    c.file("bin/busybox", busybox, 0o755)
    # Only `sh` is linked here; /init installs the other applet links itself.
    c.symlink("bin/sh", "busybox")
    c.file("init", open(a.init, "rb").read(), 0o755)
    for name, data in mods:
        c.file(f"lib/modules/{name}.ko", data)
    c.file("lib/modules/load-order", "".join(f"{n}\n" for n, _ in mods).encode())

    tmp = a.output + ".tmp"
    with open(tmp, "wb") as f:
        # mtime=0 and no file name in the gzip header: reproducible output.
        with gzip.GzipFile(fileobj=f, mode="wb", compresslevel=6, mtime=0, filename="") as gz:
            gz.write(c.bytes())
    os.replace(tmp, a.output)


if __name__ == "__main__":
    main()
