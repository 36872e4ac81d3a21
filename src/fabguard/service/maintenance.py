"""Upkeep of a running server: checkpoints when the ledger grew, CRLs before they lapse, expired
idempotency keys and expired field challenges forgotten.

A server runs ``run_once`` on a schedule (``fabguard.runtime.workers.MaintenanceSchedule``)."""

from __future__ import annotations

from sqlalchemy import func, select

from fabguard.service import field, idempotency, ledger, revocation
from fabguard.service.instance import Instance
from fabguard.store.db import event_count
from fabguard.store.models import CheckpointRow


def run_once(inst: Instance) -> None:
    with inst.db.read() as s:
        size = event_count(s)
        signed = s.execute(select(func.max(CheckpointRow.size))).scalar_one()
    if signed is None or size > signed:
        ledger.make_checkpoint(inst)
    for ca in revocation.ca_names(inst):
        revocation.current_crl(inst, ca)  # re-signs only when close to nextUpdate
    idempotency.forget_expired(inst)
    field.forget_expired_nonces(inst)
