#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Start QEMU (q35, TCG) with -device virtio-iommu-rs and show, through QMP,
what the machine holds: the device's properties (info qtree) and the virtio
status QEMU keeps for it (x-query-virtio-status: device id, offered
features, config size, queues).

Until a later issue boots a guest there is no driver, so nothing is
negotiated yet: the offered feature set is what a driver would see."""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time


class QMP:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        for _ in range(200):
            try:
                self.sock.connect(path)
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("QEMU's QMP socket never appeared")
        self.file = self.sock.makefile("rw")
        json.loads(self.file.readline())  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        self.file.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.file.flush()
        while True:
            msg = json.loads(self.file.readline())
            if "event" in msg:
                continue
            if "error" in msg:
                raise RuntimeError(f"{name}: {msg['error']['desc']}")
            return msg["return"]


def main():
    qemu = sys.argv[1]
    extra = sys.argv[2:]
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "qmp.sock")
        argv = [qemu, "-M", "q35", "-accel", "tcg", "-display", "none", "-S",
                "-nodefaults", "-qmp", f"unix:{sock},server=on,wait=off",
                "-device", "virtio-iommu-rs,id=viommu"] + extra
        print("$ " + " ".join(argv), flush=True)
        proc = subprocess.Popen(argv)
        try:
            qmp = QMP(sock)
            qtree = qmp.cmd("human-monitor-command", **{"command-line": "info qtree"})
            lines = qtree.splitlines()
            start = next(i for i, l in enumerate(lines) if "virtio-iommu-rs" in l)
            indent = len(lines[start]) - len(lines[start].lstrip())
            block = [lines[start]]
            for l in lines[start + 1:]:
                if l.strip() and len(l) - len(l.lstrip()) <= indent:
                    break
                block.append(l)
            print("\n== info qtree (virtio-iommu-rs) ==")
            print("\n".join(block))

            devs = qmp.cmd("x-query-virtio")
            path = next(d["path"] for d in devs if d["name"] == "virtio-iommu")
            status = qmp.cmd("x-query-virtio-status", path=path)
            print("\n== x-query-virtio-status " + path + " ==")
            print(f"virtio device id: {status['device-id']} ({status['name']}), "
                  f"queues: {status['num-vqs']}, broken: {status['broken']}")
            host = status["host-features"]
            print("offered features:")
            for f in host.get("dev-features", []) + host.get("transports", []):
                print("  " + f)
            qmp.cmd("quit")
        finally:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
