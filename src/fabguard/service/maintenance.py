"""Background upkeep of a running server: checkpoints when the ledger grew, CRLs before they lapse."""

from __future__ import annotations

import logging
import threading

from sqlalchemy import func, select

from fabguard.service import ledger, revocation
from fabguard.service.instance import Instance
from fabguard.store.db import event_count
from fabguard.store.models import CheckpointRow

log = logging.getLogger("fabguard.maintenance")


def run_once(inst: Instance) -> None:
    with inst.db.read() as s:
        size = event_count(s)
        signed = s.execute(select(func.max(CheckpointRow.size))).scalar_one()
    if signed is None or size > signed:
        ledger.make_checkpoint(inst)
    for ca in revocation.ca_names(inst):
        revocation.current_crl(inst, ca)  # re-signs only when close to nextUpdate


class MaintenanceSchedule:
    """Runs ``run_once`` every ``interval`` seconds on a daemon thread (several processes may each run one)."""

    def __init__(self, inst: Instance, interval: float) -> None:
        self.inst = inst
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fabguard-maintenance", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                run_once(self.inst)
            except Exception:  # a failed round is logged and retried at the next interval
                log.exception("scheduled maintenance failed")
