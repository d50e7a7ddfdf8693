#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Sum up a meson run of the virtio-iommu-rs functional tests (`make
functional`): one row per cell (machine, device, mode, boot-bypass, result,
boot-to-pass time; under it a migration's figures and a failed cell's
reasons) from the TAP in meson's JSON log and the cell.json each test
leaves in its log directory, then `functional: N passed, N failed`
(and how many were skipped, and test files that did not finish).

    tests-functional/summary.py MESON_JSON_LOG [BUILD_DIR]

BUILD_DIR (default: the log's ../..) holds tests/functional/<target>/.
Exits 1 when a cell failed or was skipped, a test file did not end with
its TAP plan (a timeout, a crash), or no cell ran."""

import json
import os
import re
import sys

TAP_RE = re.compile(r"^(ok|not ok) \d+ (\S+)(?: # (?:SKIP|skip)\S*\s*(.*))?$")


def main():
    log = sys.argv[1]
    build = sys.argv[2] if len(sys.argv) > 2 else os.path.dirname(
        os.path.dirname(os.path.abspath(log)))
    rows, problems = [], []
    with open(log) as f:
        tests = [json.loads(line) for line in f if line.strip()]
    for t in tests:
        # "qemu:SUITE+SUITE / func-<target>-<test>" (or "qemu:func-...")
        name = t["name"].split(" / ")[-1].rpartition(":")[2]
        target = name.split("-")[1] if name.count("-") >= 2 else "?"
        out = t.get("stdout") or ""
        if t.get("result") not in ("OK", "FAIL", "SKIP"):
            problems.append(f"{name}: {t.get('result')} after {t.get('duration', 0):.0f} s "
                            "(cells it did not reach have no row)")
        elif not re.search(r"^1\.\.\d+", out, re.M) and t.get("result") != "SKIP":
            problems.append(f"{name}: ended without its TAP plan ({t.get('result')})")
        for line in out.splitlines():
            m = TAP_RE.match(line.strip())
            if not m:
                continue
            status, test_id, skip = m.groups()
            cell = {}
            try:
                with open(os.path.join(build, "tests", "functional", target, test_id,
                                       "cell.json")) as f:
                    cell = json.load(f)
            except (OSError, ValueError):
                pass
            res = "SKIP" if skip is not None else ("PASS" if status == "ok" else "FAIL")
            rows.append((test_id, cell, res, skip))

    print()
    print(f"{'machine':9} {'device':16} {'mode':11} {'bypass':16} {'result':6} "
          f"{'boot-to-pass':>12}  test")
    for test_id, c, res, skip in rows:
        wall = f"{c['wall']:10.1f} s" if c.get("wall") is not None else f"{'-':>12}"
        print(f"{c.get('machine', '-'):9} {c.get('device', '-'):16} {c.get('mode', '-'):11} "
              f"{c.get('bypass', '-'):16} {res:6} {wall}  {test_id.split('.', 1)[-1]}")
        if skip is not None:
            print(f"{'':9} skipped: {skip}")
        # A migration's figures; every reason a cell failed.
        for line in c.get("details", [])[:1] + [f"- {w}" for w in c.get("why", [])]:
            print(f"{'':9} {line}")
    for p in problems:
        print(f"functional: {p}")
    passed = sum(1 for r in rows if r[2] == "PASS")
    failed = sum(1 for r in rows if r[2] == "FAIL")
    skipped = sum(1 for r in rows if r[2] == "SKIP")
    print(f"functional: {passed} passed, {failed} failed"
          + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed or skipped or problems or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
