#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The host end of the guest's network check, run by QEMU's slirp for each
guest connection to the guestfwd address (`guestfwd=tcp:IP:PORT-cmd:...`),
with the connection on stdin/stdout. No host port is opened: the bytes only
ever travel between the guest's virtio-net, slirp and this process.

Protocol: the guest sends a decimal length line and that many bytes; we
answer with the same number of bytes of our own (derived from the seed, so
the test can predict them), then exit, which closes the connection.
What we received and sent is appended to LOG as one JSON line, so the
test checks both directions against its own checksums."""

import hashlib
import json
import sys


def reply_bytes(seed, n):
    # Distinct from the guest's pattern so that an echo (or a loop back of
    # the guest's own buffers) cannot pass as a reply.
    out = bytearray()
    block = hashlib.sha256(b"netpeer:" + seed.encode()).digest()
    while len(out) < n:
        out += block
        block = hashlib.sha256(block).digest()
    return bytes(out[:n])


def main():
    log, seed = sys.argv[1], sys.argv[2]
    rd, wr = sys.stdin.buffer, sys.stdout.buffer
    rec = {"ok": False}
    try:
        header = rd.readline(32)
        n = int(header)
        data = rd.read(n)
        rec.update(received=len(data), received_sha256=hashlib.sha256(data).hexdigest())
        reply = reply_bytes(seed, len(data))
        wr.write(reply)
        wr.flush()
        rec.update(sent=len(reply), sent_sha256=hashlib.sha256(reply).hexdigest(), ok=True)
    except Exception as e:  # recorded for the test, which fails the check
        rec["error"] = repr(e)
    with open(log, "a") as f:
        f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
