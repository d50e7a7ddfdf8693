# SPDX-License-Identifier: GPL-2.0-or-later
"""Live migration of the functional-test guest between two QEMUs.

A `MigrationRun` boots the guest like a `GuestRun` (same command line) on a
source QEMUMachine whose IOMMU is `device`, and starts a destination
QEMUMachine with the same arguments except `-incoming defer` and its IOMMU
driver (`dest_device`): same device ids, same PCI addresses, same scratch
image (the destination opens the file inactive until the migration hands
it over).

The guest runs with `disk_hold=link` (see scripts/guest/init): once its
disk check has written the pattern (console marker `CHECK disk written`),
the host starts the migration over a unix socket while the guest keeps
reading the pattern back and verifying it with O_DIRECT, DMA through the
source's IOMMU. When `query-migrate` says completed on both sides, the host
takes the NIC's link down on the destination (`set_link`): the guest sees
it, verifies the pattern once more, now through the destination's IOMMU
only, prints `RESULT disk`, runs the remaining checks and powers off there.

Every RESULT and CHECK line is recorded with the side whose console
printed it; both consoles go to the test's console.log, each line prefixed
with its side."""

import json
import os
import time

from .guest import GuestRun, Console

SOURCE, DEST = "source", "destination"


class MigrationRun(GuestRun):
    """One guest, two QEMUs; see the module's description."""

    def __init__(self, workdir, guest, device, dest_device, mode="strict", boot_bypass=True,
                 checks="iommu-driver,groups,disk,read", watchdog=60, timeout=120,
                 migrate_timeout=60, **kw):
        super().__init__(workdir, guest, device=device, mode=mode, boot_bypass=boot_bypass,
                         checks=checks, watchdog=watchdog, timeout=timeout, **kw)
        self.dest_device = dest_device
        self.migrate_timeout = migrate_timeout
        # exit_code and qemu_log (checked like a GuestRun's) are the
        # destination's: the guest powers off there.
        # Filled by run():
        self.src_exit_code = None
        self.src_qemu_log = ""
        self.dest_qom_type = None
        self.dest_virtio_status = None
        self.migration = None        # the source's last query-migrate
        self.dest_migration = None   # the destination's last query-migrate
        self.migration_error = None  # why the migration did not complete
        self.migrated = False
        self.t_trigger = None        # seconds after start: migrate sent
        self.t_migrated = None       # ... both sides said completed
        self._side = SOURCE
        self._t0 = None

    def kernel_command_line(self):
        return super().kernel_command_line() + " disk_hold=link"

    # -- running -------------------------------------------------------------

    def run(self, src, dst, uri, log=None, wait_boot=None):
        """src, dst: QEMUMachines not yet launched; uri: where the
        destination listens (unix:PATH)."""
        self.fresh_disk()
        self.prepare(src)
        self.prepare(dst, device=self.dest_device, incoming=True)
        t0 = self._t0 = time.monotonic()
        deadline = t0 + self.timeout
        src.launch()
        try:
            try:
                self.qom_type = self.qom_type_of(src)
            except Exception as e:
                self.qmp_error = f"source QMP: {e}"
            # The destination waits idle (-incoming defer) while the source
            # boots; exit-on-error=false keeps it alive on a failed load, so
            # that query-migrate can say why.
            dst.launch()
            try:
                self.dest_qom_type = self.qom_type_of(dst)
                dst.cmd("migrate-incoming", uri=uri, exit_on_error=False)
            except Exception as e:
                self.migration_error = f"destination QMP: {e}"
            sc = Console(src, self.parse, log, prefix="source: ")
            dc = Console(dst, self.parse, log, prefix="destination: ")
            if wait_boot:
                self.wait_for_init(sc, wait_boot, deadline)
            self._loop(src, dst, sc, dc, uri, deadline)
            self.wall = time.monotonic() - t0
        finally:
            s = self.stop(src)
            self.src_exit_code = s if self.src_exit_code is None else self.src_exit_code
            d = self.stop(dst)
            self.exit_code = d if self.exit_code is None else self.exit_code
            self.src_qemu_log = src.get_log() or ""
            self.qemu_log = dst.get_log() or ""
        if self.wall is None:
            self.wall = time.monotonic() - t0
        with open(os.path.join(self.logdir, "migration.json"), "w") as f:
            json.dump({"source": self.migration, "destination": self.dest_migration,
                       "error": self.migration_error}, f, indent=1)
        self.collect()
        return self

    def _loop(self, src, dst, sc, dc, uri, deadline):
        if self.migration_error:
            return
        # 1. The source boots; its driver's state once the groups are seen.
        st = sc.read(self._query_point, deadline)
        if st == "done":
            self.query(src, "source ")
            st = sc.read(lambda: self.has_marker("disk", "written"), deadline)
        if st != "done":
            if st == "timeout":
                self.timed_out = True
                self.migration_error = (f"the guest did not write its disk pattern within "
                                        f"{self.timeout} s: no migration")
            else:
                self.src_exit_code = self.stop(src)
                self.exit_code = self.src_exit_code
                self.migration_error = (f"the source QEMU exited (status "
                                        f"{self.src_exit_code}) before the guest wrote "
                                        "its disk pattern: no migration")
            return
        # 2. Migrate while the guest verifies the pattern, reading the
        # source's console on between polls.
        try:
            src.cmd("migrate", uri=uri)
        except Exception as e:
            self.migration_error = f"migrate: {e}"
            return
        self.t_trigger = time.monotonic() - self._t0
        while True:
            if sc.read(None, min(deadline, time.monotonic() + 0.2)) == "eof":
                time.sleep(0.2)  # the source is gone: the poll says how
            if time.monotonic() >= deadline:
                self.timed_out = True
                self.migration_error = (f"still {self._statuses()} when the cell's "
                                        f"{self.timeout} s ran out")
                return
            err = self._poll_migration(src, dst)
            if err:
                self.migration_error = err
                return
            if (self.migration or {}).get("status") == "completed" \
                    and (self.dest_migration or {}).get("status") == "completed":
                break
        self.t_migrated = time.monotonic() - self._t0
        self.migrated = True
        # 3. The source's console is final (its guest is paused in
        # postmigrate); a line it left unfinished ends on the destination's.
        sc.read(None, time.monotonic() + 0.3)
        dc.partial, sc.partial = sc.partial, b""
        self._side = DEST
        err = self._take_over(dst)
        # The source has nothing left to do.
        self.src_exit_code = self.stop(src)
        if err:
            self.migration_error = err
            return
        # 4. The guest finishes on the destination and powers off there.
        if dc.read(None, deadline) == "timeout":
            self.timed_out = True
            return
        try:
            dst.wait(timeout=max(5, int(deadline - time.monotonic())))
        except Exception:
            self.timed_out = True

    def _statuses(self):
        return (f"source {(self.migration or {}).get('status')}, destination "
                f"{(self.dest_migration or {}).get('status')}")

    def _poll_migration(self, src, dst):
        """Refresh both query-migrate; a reason when the migration failed."""
        try:
            self.migration = src.cmd("query-migrate")
        except Exception as e:
            return f"source query-migrate: {e} (source exit status {src.exitcode()})"
        if not dst.is_running():
            return (f"the destination QEMU exited with status {dst.exitcode()} during "
                    f"the migration (source: {self.migration.get('status')})")
        try:
            self.dest_migration = dst.cmd("query-migrate")
        except Exception as e:
            return f"destination query-migrate: {e}"
        # The destination's error first: a failed load is the cause, the
        # source's broken socket its consequence.
        for side, m in ((DEST, self.dest_migration), (SOURCE, self.migration)):
            if m.get("status") in ("failed", "cancelled"):
                return (f"migration {m.get('status')} on the {side}: "
                        f"{m.get('error-desc', '(no error-desc)')} ({self._statuses()})")
        if time.monotonic() - self._t0 > self.t_trigger + self.migrate_timeout:
            try:
                src.cmd("migrate_cancel")
            except Exception:
                pass
            return (f"not completed {self.migrate_timeout} s after it started "
                    f"({self._statuses()})")
        return None

    def _take_over(self, dst):
        """After completion: the destination runs the guest; ask what its
        IOMMU looks like and give the guest the signal (link down)."""
        try:
            for _ in range(100):
                if dst.cmd("query-status").get("status") == "running":
                    break
                time.sleep(0.1)
            else:
                return "the destination never ran the guest after the migration"
            self.dest_qom_type = self.qom_type_of(dst)
            self.dest_virtio_status = dst.cmd(
                "x-query-virtio-status", path="/machine/peripheral/iommu/virtio-backend")
            dst.cmd("set_link", name="net0", up=False)
        except Exception as e:
            return f"destination after the migration: {e}"
        return None
