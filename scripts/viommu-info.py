#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Print a running QEMU's virtio-iommus for a person: endpoints, domains
and mappings, counters.

    scripts/viommu-info.py QMP_SOCKET [--mappings N]

QMP_SOCKET is a QMP unix socket of the QEMU (`-qmp unix:PATH,server=on,
wait=off`). Every virtio-iommu-rs and virtio-iommu-pci under /machine is
shown: for virtio-iommu-rs its read-only QOM properties `endpoints`,
`domains` and `counters` (docs/device.md, "Introspection"); for QEMU's C
device what QEMU exposes of it (its virtio status), as it has no such
properties. Then every device using the Rust DMA API that exposes its
handle (a read-only `dma-stats` property, as `x-dma-test` does): its mode
and IOTLB counters."""

import argparse
import json
import socket
import sys

IOMMU_TYPES = ("virtio-iommu-rs", "virtio-iommu-pci")


class Qmp:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.file = self.sock.makefile("rw")
        json.loads(self.file.readline())  # the greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        self.file.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.file.flush()
        while True:
            rsp = json.loads(self.file.readline())
            if "event" in rsp:
                continue
            if "error" in rsp:
                raise RuntimeError(f"{name}: {rsp['error'].get('desc')}")
            return rsp["return"]


def find_iommus(qmp, path="/machine"):
    """(path, type) of every virtio-iommu below `path`."""
    found = []
    for p in qmp.cmd("qom-list", path=path):
        t = p.get("type", "")
        if not t.startswith("child<"):
            continue
        child = f"{path}/{p['name']}"
        kind = t[len("child<"):-1]
        if kind in IOMMU_TYPES:
            found.append((child, kind))
        elif p["name"] in ("peripheral", "peripheral-anon", "unattached") or \
                kind in ("container",):
            found += find_iommus(qmp, child)
    return found


def find_dma_users(qmp):
    """(path, type, stats) of every user-created device with `dma-stats`."""
    found = []
    for container in ("/machine/peripheral", "/machine/peripheral-anon"):
        for p in qmp.cmd("qom-list", path=container):
            if not p.get("type", "").startswith("child<"):
                continue
            child = f"{container}/{p['name']}"
            if any(q["name"] == "dma-stats" for q in qmp.cmd("qom-list", path=child)):
                found.append((child, p["type"][len("child<"):-1],
                              qmp.cmd("qom-get", path=child, property="dma-stats")))
    return found


def table(headers, rows):
    """`rows` (lists of cells) under `headers`, columns as wide as needed."""
    rows = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def show_rs(qmp, path, max_mappings):
    endpoints = qmp.cmd("qom-get", path=path, property="endpoints")
    domains = qmp.cmd("qom-get", path=path, property="domains")
    counters = qmp.cmd("qom-get", path=path, property="counters")

    print("\nendpoints")
    print(table(
        ["id", "bus", "address", "device", "domain", "bypass-devices", "address-space", "dma"],
        [[f"0x{e['id']:x}", e["bus"], e["address"], e["device"] or "-",
          "-" if e["domain"] is None else e["domain"], "yes" if e["bypass-devices"] else "no",
          e["address-space"], e["dma"]] for e in endpoints]))

    print("\ndomains")
    print(table(["id", "bypass", "endpoints", "mappings"],
                [[d["id"], "yes" if d["bypass"] else "no",
                  ",".join(f"0x{e:x}" for e in d["endpoints"]) or "-", d["mapping-count"]]
                 for d in domains]))
    for d in domains:
        if not d["mappings"]:
            continue
        shown = d["mappings"][:max_mappings]
        more = d["mapping-count"] - len(shown)
        print(f"\nmappings of domain {d['id']}" + (f" (first {len(shown)})" if more else ""))
        print(table(["iova", "end", "phys", "flags"],
                    [[f"0x{m['iova']:x}", f"0x{m['end']:x}", f"0x{m['phys']:x}",
                      ",".join(m["flags"]) or "-"] for m in shown]))
        if more:
            print(f"... and {more} more")

    print("\nrequests")
    print(table(["type", "status", "count"],
                [[t, s, n] for t, by_status in counters["requests"].items()
                 for s, n in by_status.items()]))
    print()
    for k in ("malformed-chains", "faults-raised", "faults-dropped", "notifier-calls",
              "address-space-switches", "translation-snapshots", "requests-copied"):
        print(f"{k:24} {counters[k]}")


def show_c(qmp, path):
    status = qmp.cmd("x-query-virtio-status", path=f"{path}/virtio-backend")
    print("  QEMU's C device exposes no endpoints, domains or counters;")
    print(f"  virtio status: {', '.join(status.get('status', {}).get('statuses', [])) or '-'}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("socket", help="the QEMU's QMP unix socket")
    ap.add_argument("--mappings", type=int, default=16,
                    help="mappings shown per domain (the device lists up to 64)")
    a = ap.parse_args()
    qmp = Qmp(a.socket)
    iommus = find_iommus(qmp)
    users = find_dma_users(qmp)
    if not iommus and not users:
        sys.exit("no virtio-iommu and no DMA API user in this QEMU")
    for path, kind in iommus:
        print(f"{kind} at {path}")
        if kind == "virtio-iommu-rs":
            show_rs(qmp, path, a.mappings)
        else:
            show_c(qmp, path)
    if users:
        print("\nDMA API handles")
        keys = ["hits", "misses", "translations", "unmap-notifications", "invalidated-maps"]
        print(table(["device", "type", "mode"] + keys,
                    [[path.rsplit("/", 1)[-1], kind, "-" if s is None else s["mode"]]
                     + ["-" if s is None else s[k] for k in keys] for path, kind, s in users]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
