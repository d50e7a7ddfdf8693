# SPDX-License-Identifier: GPL-2.0-or-later
"""Live migration of the functional-test guest between two QEMUs.

A `MigrationRun` boots the guest like a `GuestRun` (same command line) in a
source QEMU whose IOMMU is `device`, and starts at the same time a
destination QEMU with the same command line except its console file, its
QMP socket, `-incoming defer` and its IOMMU driver (`dest_device`): same
device ids, same PCI addresses, same scratch image (the destination opens
the file inactive until the migration hands it over).

The guest runs with `disk_hold=link` (see scripts/guest/init): once its
disk check has written the pattern (console marker `CHECK disk written`),
the host starts the migration over a unix socket while the guest keeps
reading the pattern back and verifying it with O_DIRECT, DMA through the
source's IOMMU. When `query-migrate` says completed on both sides, the host
takes the NIC's link down on the destination (`set_link`): the guest sees
it, verifies the pattern once more, now through the destination's IOMMU
only, prints `RESULT disk`, runs the remaining checks and powers off there.

Every RESULT and CHECK line is recorded with the side whose console
printed it. Files in the work directory: console.log / console-dst.log
(each QEMU's serial console), guest.log (the two joined at the migration
point), cmdline / cmdline-dst, qemu.stderr / qemu-dst.stderr,
migration.json (both sides' last query-migrate)."""

import json
import os
import shlex
import shutil
import socket
import subprocess
import time

import guestvm

SOURCE, DEST = "source", "destination"


class MigrationRun(guestvm.GuestRun):
    """One guest, two QEMUs; see the module's description."""

    def __init__(self, workdir, device, dest_device, mode="strict", boot_bypass=True,
                 checks="iommu-driver,groups,disk,read", watchdog=60, timeout=150,
                 migrate_timeout=60, **kw):
        super().__init__(workdir, device=device, mode=mode, boot_bypass=boot_bypass,
                         checks=checks, watchdog=watchdog, timeout=timeout, **kw)
        self.dest_device = dest_device
        self.migrate_timeout = migrate_timeout
        # exit_code (checked like a GuestRun's) is the destination's: the
        # guest powers off there. Its stderr goes with it.
        self.stderr_name = "qemu-dst.stderr"
        # Filled by run():
        self.src_exit_code = None
        self.dest_qom_type = None
        self.dest_virtio_status = None
        self.migration = None        # the source's last query-migrate
        self.dest_migration = None   # the destination's last query-migrate
        self.migration_error = None  # why the migration did not complete
        self.migrated = False
        self.sides = []              # (side, RESULT line), in order
        self.side = {}               # check -> side of its (last) RESULT line
        self.markers = []            # (side, check, what, {key: value})
        self.t_trigger = None        # seconds after start: migrate sent
        self.t_migrated = None       # ... both sides said completed
        self._side = SOURCE
        self._t0 = None

    def _append(self):
        return super()._append() + " disk_hold=link"

    def _parse(self, line):
        super()._parse(line)
        m = guestvm.RESULT_RE.match(line)
        if m:
            self.sides.append((self._side, line))
            self.side[m.group(1)] = self._side
        k = guestvm.MARKER_RE.match(line)
        if k:
            kv = {a: (q if v.startswith('"') else v)
                  for a, v, q in guestvm.KV_RE.findall(k.group(4))}
            kv["status"] = k.group(3)
            self.markers.append((self._side, k.group(1), k.group(2), kv))

    def marker(self, check, what):
        """The side of the first such marker, or None."""
        for side, c, w, _ in self.markers:
            if (c, w) == (check, what):
                return side
        return None

    # -- running -------------------------------------------------------------

    def _listen(self, path):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        s.listen(1)
        s.settimeout(15)
        return s

    def _start(self, argv, name, stderr_name):
        with open(os.path.join(self.workdir, name), "w") as f:
            f.write(" ".join(shlex.quote(a) for a in argv) + "\n")
        err = open(os.path.join(self.workdir, stderr_name), "wb")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        return proc, err


    def run(self):
        disk = self._fresh_workdir(("console.log", "console-dst.log", "guest.log",
                             "netpeer.log", "qemu.stderr", "qemu-dst.stderr",
                             "migration.json"))
        mig_sock = os.path.join(self.sockdir, "migrate.sock")
        src_l = self._listen(os.path.join(self.sockdir, "qmp.sock"))
        dst_l = self._listen(os.path.join(self.sockdir, "qmp-dst.sock"))
        self.argv = self.build_argv(os.path.join(self.sockdir, "qmp.sock"))
        dst_argv = self.build_argv(os.path.join(self.sockdir, "qmp-dst.sock"),
                                   console="console-dst.log", device=self.dest_device,
                                   incoming=True)
        src_console = os.path.join(self.workdir, "console.log")
        dst_console = os.path.join(self.workdir, "console-dst.log")

        t0 = self._t0 = time.monotonic()
        src, src_err = self._start(self.argv, "cmdline", "qemu.stderr")
        dst, dst_err = None, None
        sq = dq = None
        try:
            try:
                sq = guestvm.QMP(src_l.accept()[0])
                self.qom_type = sq.cmd("qom-get", path="/machine/peripheral/iommu",
                                       property="type")
            except (OSError, RuntimeError, EOFError) as e:
                self.qmp_error = f"source QMP: {e}"
            # The destination waits idle (-incoming defer) while the source
            # boots; exit-on-error=false keeps it alive on a failed load, so
            # that query-migrate can say why.
            dst, dst_err = self._start(dst_argv, "cmdline-dst", "qemu-dst.stderr")
            try:
                dq = guestvm.QMP(dst_l.accept()[0])
                self.dest_qom_type = dq.cmd("qom-get", path="/machine/peripheral/iommu",
                                            property="type")
                dq.cmd("migrate-incoming", uri="unix:" + mig_sock,
                       **{"exit-on-error": False})
            except (OSError, RuntimeError, EOFError) as e:
                self.migration_error = f"destination QMP: {e}"
            self._loop(t0, src, dst, sq, dq, src_console, dst_console, mig_sock)
            self.wall = time.monotonic() - t0
        finally:
            self.src_exit_code = self._stop(src, sq)
            if dst:
                rc = self._stop(dst, dq)
                self.exit_code = rc if self.exit_code is None else self.exit_code
            for q in (sq, dq):
                if q:
                    q.close()
            for x in (src_l, dst_l, src_err, dst_err):
                if x:
                    x.close()
            shutil.rmtree(self.sockdir, ignore_errors=True)
        if self.wall is None:
            self.wall = time.monotonic() - t0
        with open(os.path.join(self.workdir, "migration.json"), "w") as f:
            json.dump({"source": self.migration, "destination": self.dest_migration,
                       "error": self.migration_error}, f, indent=1)
        self._join_logs(src_console, dst_console)

        peer_log = os.path.join(self.workdir, "netpeer.log")
        if os.path.exists(peer_log):
            with open(peer_log) as f:
                self.peer = [json.loads(line) for line in f if line.strip()]
        with open(disk, "rb") as f:
            self.disk_sha256 = guestvm.sha256(f.read(self.disk_mib * 1024 * 1024))
        os.unlink(disk)
        return self

    def _loop(self, t0, src, dst, sq, dq, src_console, dst_console, mig_sock):
        pos, partial = 0, ""
        queried = False
        deadline = t0 + self.timeout
        if not (sq and dq) and not self.migration_error:
            self.migration_error = "no QMP connection to the " + ("source" if not sq
                                                                  else "destination")
        phase = SOURCE if self.migration_error is None else "failed"
        last_poll = 0
        while True:
            now = time.monotonic()
            if now > deadline:
                self.timed_out = True
                if phase == "migrating":
                    self.migration_error = (f"still {self._statuses()} when the cell's "
                                            f"{self.timeout} s ran out")
                return
            if phase in (SOURCE, "migrating", "failed"):
                pos, partial = self._read_console(src_console, pos, partial)
            else:
                pos, partial = self._read_console(dst_console, pos, partial)
            # What the source's driver negotiated, as GuestRun asks it.
            if sq and not queried and ("groups" in self.results or "watchdog" in self.results):
                queried = True
                try:
                    self.virtio_status = sq.cmd(
                        "x-query-virtio-status",
                        path="/machine/peripheral/iommu/virtio-backend")
                except (OSError, RuntimeError, EOFError) as e:
                    self.qmp_error = f"source x-query-virtio-status: {e}"

            if phase == "failed":
                # Nothing more to learn: the cell fails on the migration.
                return
            if phase == SOURCE:
                if src.poll() is not None:
                    self._read_console(src_console, pos, partial + "\n")
                    self.exit_code = src.returncode
                    self.migration_error = (f"the source QEMU exited (status "
                                            f"{src.returncode}) before the guest wrote "
                                            "its disk pattern: no migration")
                    return
                if self.marker("disk", "written"):
                    try:
                        sq.cmd("migrate", uri="unix:" + mig_sock)
                    except (OSError, RuntimeError, EOFError) as e:
                        self.migration_error = f"migrate: {e}"
                        phase = "failed"
                        continue
                    self.t_trigger = time.monotonic() - t0
                    phase = "migrating"
            elif phase == "migrating" and now - last_poll >= 0.2:
                last_poll = now
                err = self._poll_migration(src, dst, sq, dq)
                if err:
                    self.migration_error = err
                    phase = "failed"
                    continue
                if (self.migration or {}).get("status") == "completed" \
                        and (self.dest_migration or {}).get("status") == "completed":
                    self.t_migrated = time.monotonic() - t0
                    self.migrated = True
                    # The source's console is final (its guest is paused in
                    # postmigrate); a line it left unfinished ends on the
                    # destination's.
                    pos, partial = self._read_console(src_console, pos, partial)
                    pos, self._side = 0, DEST
                    err = self._take_over(dq)
                    # The source has nothing left to do.
                    self.src_exit_code = self._stop(src, sq)
                    if err:
                        self.migration_error = err
                        phase = "failed"
                        continue
                    phase = DEST
            elif phase == DEST:
                if dst.poll() is not None:
                    self.exit_code = dst.returncode
                    self._read_console(dst_console, pos, partial + "\n")
                    return
            time.sleep(0.1)

    def _statuses(self):
        return (f"source {(self.migration or {}).get('status')}, destination "
                f"{(self.dest_migration or {}).get('status')}")

    def _poll_migration(self, src, dst, sq, dq):
        """Refresh both query-migrate; a reason when the migration failed."""
        try:
            self.migration = sq.cmd("query-migrate")
        except (OSError, RuntimeError, EOFError) as e:
            return f"source query-migrate: {e} (source exit status {src.poll()})"
        if dst.poll() is not None:
            return (f"the destination QEMU exited with status {dst.returncode} during "
                    f"the migration (source: {self.migration.get('status')})")
        try:
            self.dest_migration = dq.cmd("query-migrate")
        except (OSError, RuntimeError, EOFError) as e:
            return f"destination query-migrate: {e}"
        # The destination's error first: a failed load is the cause, the
        # source's broken socket its consequence.
        for side, m in ((DEST, self.dest_migration), (SOURCE, self.migration)):
            if m.get("status") in ("failed", "cancelled"):
                return (f"migration {m.get('status')} on the {side}: "
                        f"{m.get('error-desc', '(no error-desc)')} ({self._statuses()})")
        if time.monotonic() - self._t0 > self.t_trigger + self.migrate_timeout:
            try:
                sq.cmd("migrate_cancel")
            except (OSError, RuntimeError, EOFError):
                pass
            return (f"not completed {self.migrate_timeout} s after it started "
                    f"({self._statuses()})")
        return None

    def _take_over(self, dq):
        """After completion: the destination runs the guest; ask what its
        IOMMU looks like and give the guest the signal (link down)."""
        try:
            for _ in range(100):
                if dq.cmd("query-status").get("status") == "running":
                    break
                time.sleep(0.1)
            else:
                return "the destination never ran the guest after the migration"
            self.dest_qom_type = dq.cmd("qom-get", path="/machine/peripheral/iommu",
                                        property="type")
            self.dest_virtio_status = dq.cmd(
                "x-query-virtio-status", path="/machine/peripheral/iommu/virtio-backend")
            dq.cmd("set_link", name="net0", up=False)
        except (OSError, RuntimeError, EOFError) as e:
            return f"destination after the migration: {e}"
        return None

    def _join_logs(self, src_console, dst_console):
        """guest.log: the source's console, then the destination's."""
        with open(os.path.join(self.workdir, "guest.log"), "wb") as out:
            for path, label in ((src_console, "source"), (dst_console, "destination")):
                out.write(f"===== harness: {label} console ({os.path.basename(path)}) "
                          "=====\n".encode())
                try:
                    with open(path, "rb") as f:
                        out.write(f.read())
                except FileNotFoundError:
                    out.write(b"(none)\n")
