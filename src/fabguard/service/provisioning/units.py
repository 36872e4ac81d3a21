"""Provisioned units as an operator lists them (``fabguard unit list``), with the identities allocated to each
from its product's pools (serial index, MAC addresses, Matter vendor/product/discriminator)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from fabguard.domain.errors import InvalidRequest
from fabguard.service.core.instance import Instance
from fabguard.store import identities as identity_rows
from fabguard.store.models import Unit

MAX_LIST = 10_000


@dataclass(frozen=True, slots=True)
class UnitView:
    serial: str
    product_id: str
    order_id: str
    issuing_ca: str
    cert_serial: str
    issued_at: datetime
    revoked_at: datetime | None
    revocation_reason: str | None
    identity: dict[str, object] | None = None

    def to_dict(self) -> dict[str, object]:
        """The unit as ``GET /api/v1/units`` and ``fabguard unit list --json`` show it."""
        return {
            "serial": self.serial,
            "product_id": self.product_id,
            "order_id": self.order_id,
            "issuing_ca": self.issuing_ca,
            "cert_serial": self.cert_serial,
            "issued_at": self.issued_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "revocation_reason": self.revocation_reason,
            "identity": self.identity,
        }


def list_units(
    inst: Instance, *, order_id: str | None = None, product_id: str | None = None, limit: int = 100
) -> list[UnitView]:
    """The newest ``limit`` units (of one order or product, if given), newest first; agent-issued ones too."""
    if not 1 <= limit <= MAX_LIST:
        raise InvalidRequest(f"limit must be 1-{MAX_LIST}")
    q = select(Unit)
    if order_id is not None:
        q = q.where(Unit.order_id == order_id)
    if product_id is not None:
        q = q.where(Unit.product_id == product_id)
    with inst.db.read() as s:
        rows = list(s.execute(q.order_by(Unit.id.desc()).limit(limit)).scalars())
        given = identity_rows.allocations(s, [(u.product_id, u.serial) for u in rows])
        return [
            UnitView(
                u.serial,
                u.product_id,
                u.order_id,
                u.issuing_ca,
                u.cert_serial,
                u.issued_at,
                u.revoked_at,
                u.revocation_reason,
                identity_rows.public_identity(given.get((u.product_id, u.serial))),
            )
            for u in rows
        ]
