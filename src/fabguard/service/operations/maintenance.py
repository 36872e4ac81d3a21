"""Upkeep of a running server: checkpoints when the ledger grew, CRLs and OCSP responders before they lapse, expired
idempotency keys and expired field challenges forgotten.

A server runs ``run_round`` on a schedule (``fabguard.runtime.workers.MaintenanceSchedule``)."""

from __future__ import annotations

from sqlalchemy import func, select

from fabguard.service.authority import ocsp, revocation
from fabguard.service.core import client_trust, idempotency
from fabguard.service.core.instance import Instance
from fabguard.service.field import genuineness
from fabguard.service.ledger import merkle_log
from fabguard.store.eventlog import event_count
from fabguard.store.models import CheckpointRow


def run_round(inst: Instance) -> None:
    with inst.db.read() as s:
        size = event_count(s)
        signed = s.execute(select(func.max(CheckpointRow.size))).scalar_one()
    if signed is None or size > signed:
        merkle_log.make_checkpoint(inst)
    for ca in revocation.ca_names(inst):
        revocation.current_crl(inst, ca)  # re-signs only when close to nextUpdate
    ocsp.renew_responders(inst)  # makes or renews only a responder close to its end
    client_trust.write_client_trust(inst)  # a CA another machine added: this home's servers trust it too
    idempotency.forget_expired(inst)
    genuineness.forget_expired_nonces(inst)
