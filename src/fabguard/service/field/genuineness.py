"""Field genuineness checks: hand out challenges, judge devices' answers, list the checks (ADR 0015).

A challenge is stateless (``pki.field_nonce``): 32 bytes carrying their expiry and a MAC under the
instance's nonce key, so handing one out writes nothing and any server process of the instance can
judge the answer. The answer is judged in a group (``service.field.checks``: the nonce spent in the
replay set, the facts gathered, ``domain.field`` deciding, the outcome recorded as a ``field.checked``
event with the clone signal it shows, which the ``field_clone`` detector raises as an alert, and a
``field_checks`` row), committed before it is answered. A malformed answer or a nonce that cannot be
used (unknown, expired, already used) is refused (4xx), recorded as ``field.refused``, and spends nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from sqlalchemy import delete, select

from fabguard.domain.errors import FabGuardError, InvalidRequest
from fabguard.service.core.instance import Instance
from fabguard.service.field.answers import (
    CHECKED,
    MAX_CLIENT,
    REFUSED,
    Answer,
    Origin,
    parse_answer,
    parse_origin,
    read_answer,
    read_origin,
)
from fabguard.service.field.checks import (
    Job,
    Outcome,
    Refused,
    Runner,
    decide_group,
    device_cas,
    new_challenge,
    nonce_key,
    prepare,
    trusted_cas,
)
from fabguard.store.field_models import FieldCheck, FieldNonce

__all__ = [
    "CHECKED",
    "MAX_CLIENT",
    "REFUSED",
    "Answer",
    "Origin",
    "RawAnswer",
    "forget_expired_nonces",
    "issue_challenge",
    "issue_challenges",
    "list_checks",
    "parse_answer",
    "parse_origin",
    "trusted_cas",
    "verify",
    "verify_batch",
]

# Used nonces stay in the replay set this long past their expiry, so a server process whose clock is
# behind the one that runs maintenance still sees them expired before they are forgotten.
FORGET_MARGIN = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class RawAnswer:
    """One answer of a batch as the API receives it, not yet parsed."""

    nonce: str
    signature: str
    chain: str
    source: str | None = None


def issue_challenge(inst: Instance, *, actor: str) -> dict[str, str]:
    """A fresh nonce for one device to sign (``context`` + nonce bytes, see ``domain.field``); writes
    nothing (``actor`` is who asked: the check records who answered)."""
    del actor
    return new_challenge(inst, nonce_key(inst), inst.clock())


def issue_challenges(inst: Instance, *, actor: str, count: int) -> list[dict[str, str]]:
    """``count`` fresh nonces (1 to ``Limits.max_field_batch``), one per device, in one call."""
    if not 1 <= count <= inst.limits.max_field_batch:
        raise InvalidRequest(
            f"ask for 1 to {inst.limits.max_field_batch} challenges at once", code="field_batch_invalid"
        )
    del actor
    key, now = nonce_key(inst), inst.clock()
    return [new_challenge(inst, key, now) for _ in range(count)]


def _runner(inst: Instance, run: Runner | None) -> Runner:
    return run if run is not None else partial(decide_group, inst)


def verify(inst: Instance, answer: Answer, origin: Origin, *, run: Runner | None = None) -> dict[str, object]:
    """Judge one answer: the verdict, its reason and the clone signal, recorded as an event. ``run``
    decides its group (the server's field writer); by default it is decided alone, in this thread."""
    job = prepare(inst, answer, origin, device_cas(inst), nonce_key(inst))
    outcome = _runner(inst, run)([job])[0]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def verify_batch(
    inst: Instance, answers: Sequence[RawAnswer], *, actor: str, client: str | None, run: Runner | None = None
) -> list[Outcome]:
    """Judge many devices' answers (a device cloud's batch): each outcome, in order, is the check's answer
    or the error that refused it (a malformed answer refuses itself only), all recorded."""
    if not 1 <= len(answers) <= inst.limits.max_field_batch:
        raise InvalidRequest(f"a batch holds 1 to {inst.limits.max_field_batch} answers", code="field_batch_invalid")
    cas, key = device_cas(inst), nonce_key(inst)
    jobs: list[Job] = []
    for raw in answers:
        origin = Origin(actor, None, client[:MAX_CLIENT] if client else None)
        try:
            origin = read_origin(actor, raw.source, client)
            jobs.append(prepare(inst, read_answer(raw.nonce, raw.signature, raw.chain), origin, cas, key))
        except FabGuardError as exc:
            jobs.append(Refused(exc, origin))
    return _runner(inst, run)(jobs)


def forget_expired_nonces(inst: Instance) -> int:
    """Maintenance: drop used challenges past their expiry (and ``FORGET_MARGIN``) from the replay set: an
    answer to one is refused by the expiry it carries; returns how many went."""
    with inst.db.transaction() as s:
        gone = s.execute(
            delete(FieldNonce)
            .where(FieldNonce.expires_at < inst.clock() - FORGET_MARGIN)
            .execution_options(synchronize_session=False)
        )
        return int(gone.rowcount)  # type: ignore[attr-defined]


def list_checks(inst: Instance, *, limit: int = 50) -> list[dict[str, object]]:
    """The latest field checks, newest first (the dashboard's table)."""
    with inst.db.read() as s:
        rows = s.execute(select(FieldCheck).order_by(FieldCheck.id.desc()).limit(min(limit, inst.limits.max_page)))
        return [
            {
                "seq": c.seq,
                "at": c.at.isoformat(),
                "serial": c.serial,
                "genuine": c.genuine,
                "reason": c.reason,
                "clone": c.clone,
                "place": c.place,
                "source": c.source,
                "client": c.client,
                "actor": c.actor,
            }
            for c in rows.scalars()
        ]
