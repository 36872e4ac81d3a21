"""Each CA's published CRL and its number, taken under a row lock in the publishing transaction.

The ``crls`` row of a CA is its CRL-number counter: a publisher locks it (PostgreSQL ``FOR UPDATE``;
SQLite's ``BEGIN IMMEDIATE`` already holds the one write lock), reads the revocations, signs the next
number and writes it back before the lock goes. So numbers strictly increase over every process and
restart, and a CRL never lists less than one numbered before it (RFC 5280 5.2.3).
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from fabguard.store.models import CrlRow


def lock_crl(s: Session, ca: str) -> CrlRow | None:
    """``ca``'s CRL row, locked until the transaction ends (None before its first CRL)."""
    return s.execute(select(CrlRow).where(CrlRow.ca == ca).with_for_update()).scalar_one_or_none()


def insert_first_crl(s: Session, ca: str, der: bytes, this_update: datetime, next_update: datetime) -> bool:
    """Publish ``ca``'s first CRL (number 1): False if another transaction published one meanwhile, which
    then holds the row (on PostgreSQL this waits for that transaction's end)."""
    table = cast(Table, CrlRow.__table__)
    ins = postgresql.insert(table) if s.get_bind().dialect.name == "postgresql" else sqlite.insert(table)
    values = {"ca": ca, "number": 1, "der": der, "this_update": this_update, "next_update": next_update}
    # RETURNING rather than rowcount: psycopg's rowcount for an INSERT .. ON CONFLICT is not to be relied on.
    return s.execute(ins.values(values).on_conflict_do_nothing().returning(table.c.ca)).first() is not None


__all__ = ["insert_first_crl", "lock_crl"]
