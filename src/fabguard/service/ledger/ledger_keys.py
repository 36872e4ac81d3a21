"""The ledger's checkpoint keys and their rotation with an overlap (``fabguard.ledger.keychain``).

Until the first rotation the instance's ``ledger`` key alone signs, and ``ledger_keys`` is empty. ``rotate``
makes a new Ed25519 key (an encrypted file, like the first), has the signing key endorse it and opens the
overlap: from then on every checkpoint carries both signatures, while single-signature documents (reports,
statements, manifests, leases, the CRA pack) stay with the old key, so verifiers that kept only the old key
notice nothing. ``finish_rotation`` retires the old key (the new one signs its retirement, naming the last tree
size it covers): from then on the new key alone signs everything. Each step is a ledger event in the same
transaction as its row, and the chain is published (``GET /api/v1/ledger/keys``, ``ledger-keys.json`` in an
export and the CRA pack) for verifiers to follow from the key they kept.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fabguard.domain.errors import ConfigurationError, Conflict
from fabguard.ledger.checkpoint import verifier_key
from fabguard.ledger.keychain import (
    LedgerKey,
    chain_document,
    retirement_statement,
    sign_statement,
    transition_statement,
)
from fabguard.pki.keys import write_encrypted_key
from fabguard.service.core.instance import Instance
from fabguard.store.eventlog import append_event
from fabguard.store.models import LedgerKeyRow

FIRST_KEY_REF = "file:ledger"


@dataclass(frozen=True)
class HeldKey:
    """A key of the chain with the reference of its private half in the key store."""

    generation: int
    key_ref: str
    public: LedgerKey


def origin(inst: Instance) -> str:
    return f"{inst.config.hostnames[0]}/fabguard-ledger"


def _private(inst: Instance, key_ref: str) -> ed25519.Ed25519PrivateKey:
    key = inst.keys.load(key_ref)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigurationError("a ledger key must be Ed25519")
    return key


def _first(inst: Instance) -> HeldKey:
    verifier = verifier_key(origin(inst), _private(inst, FIRST_KEY_REF).public_key())
    return HeldKey(0, FIRST_KEY_REF, LedgerKey(verifier, 0))


def _rows(s: Session) -> list[LedgerKeyRow]:
    return list(s.execute(select(LedgerKeyRow).order_by(LedgerKeyRow.generation)).scalars())


def _held(row: LedgerKeyRow) -> HeldKey:
    public = LedgerKey(row.verifier, row.from_size, row.until_size, row.endorsement, row.retirement)
    return HeldKey(row.generation, row.key_ref, public)


def chain(inst: Instance) -> list[HeldKey]:
    """Every key the ledger has signed with, oldest first."""
    with inst.db.read() as s:
        rows = _rows(s)
    return [_held(r) for r in rows] if rows else [_first(inst)]


def signing_keys(inst: Instance) -> list[tuple[str, ed25519.Ed25519PrivateKey]]:
    """The keys that sign checkpoints now (two during an overlap), oldest first, with their verifier keys."""
    return [(k.public.verifier, _private(inst, k.key_ref)) for k in chain(inst) if k.public.until_size is None]


def verifiers(inst: Instance) -> set[str]:
    """The verifier keys of every key the ledger has signed with (a lease or report from before a rotation)."""
    return {k.public.verifier for k in chain(inst)}


def document(inst: Instance) -> dict[str, Any]:
    """The published chain (``fabguard.ledger.keychain`` says how to follow it)."""
    return chain_document(origin(inst), [k.public for k in chain(inst)])


def rotate(inst: Instance, *, actor: str) -> HeldKey:
    """Begin a rotation: a new key, endorsed by the signing one; checkpoints are signed by both until
    :func:`finish_rotation`."""
    keys = chain(inst)
    signing = [k for k in keys if k.public.until_size is None]
    if len(signing) > 1:
        raise Conflict(
            "a rotation of the ledger key is under way: finish it ('fabguard ledger rotate-key --finish') first",
            code="key_rotation_in_progress",
        )
    previous = signing[0]
    generation = keys[-1].generation + 1
    # A name of its own: a rival rotating at the same moment writes another file, and the loser removes only its own.
    name = f"ledger-{generation}-{secrets.token_hex(4)}"
    path = inst.keys.path(name)
    new_key = ed25519.Ed25519PrivateKey.generate()
    write_encrypted_key(new_key, path, inst.keys.passphrase())
    verifier = verifier_key(origin(inst), new_key.public_key())
    now = inst.clock()
    try:
        with inst.db.transaction() as s:
            if not _rows(s):
                s.add(_row(previous, now))
            seq = append_event(
                s, "ledger.key_rotated", at=now, actor=actor, detail={"generation": generation, "verifier": verifier}
            )
            from_size = seq - 1  # the rotation's own entry is the first the new key covers
            statement = transition_statement(origin(inst), previous.public.verifier, verifier, from_size)
            endorsement = sign_statement(_private(inst, previous.key_ref), statement)
            row = LedgerKeyRow(
                generation=generation,
                key_ref=f"file:{name}",
                verifier=verifier,
                from_size=from_size,
                endorsement=endorsement,
                created_at=now,
            )
            s.add(row)
            s.flush()
            held = _held(row)
    except IntegrityError:
        path.unlink(missing_ok=True)
        raise Conflict(
            "another rotation of the ledger key began at the same moment", code="key_rotation_in_progress"
        ) from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return held


def finish_rotation(inst: Instance, *, actor: str) -> HeldKey:
    """End the overlap: the newer key signs the older one's retirement; it alone signs from now on. Returns
    the retired key."""
    now = inst.clock()
    with inst.db.transaction() as s:
        signing = [r for r in _rows(s) if r.until_size is None]
        if len(signing) < 2:
            raise Conflict("no rotation of the ledger key is under way: one key signs", code="no_key_rotation")
        old, new = signing[0], signing[1]
        seq = append_event(
            s,
            "ledger.key_retired",
            at=now,
            actor=actor,
            detail={"generation": old.generation, "verifier": old.verifier},
        )
        until = seq - 1  # the retirement's own entry is already the new key's alone
        statement = retirement_statement(origin(inst), old.verifier, until)
        old.until_size, old.retired_at = until, now
        old.retirement = sign_statement(_private(inst, new.key_ref), statement)
        s.flush()
        return _held(old)


def _row(key: HeldKey, now: datetime) -> LedgerKeyRow:
    return LedgerKeyRow(
        generation=key.generation,
        key_ref=key.key_ref,
        verifier=key.public.verifier,
        from_size=key.public.from_size,
        until_size=key.public.until_size,
        endorsement=key.public.endorsement,
        retirement=key.public.retirement,
        created_at=now,
    )
