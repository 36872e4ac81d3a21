"""Field checks decided in groups: many answers, one transaction, one commit (ADR 0015).

An answer goes through two steps. ``prepare`` (in the request's thread, no write) checks the nonce
against the instance's nonce key (``pki.field_nonce``: unknown if the MAC fails, expired past the expiry
it carries) and does the cryptography that needs no record: which of our CAs signed the leaf, its
validity, the device's signature. ``decide_group`` (the field writer's thread, ``runtime.field_writer``,
or the caller's) then decides a group of prepared answers in one transaction:

1. spends their nonces: one ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` into the replay set; a nonce
   already there, or twice in the group, is ``nonce_used`` (the first answer has it);
2. reads the facts of the whole group at once (our CAs' states, the units of the serials, their
   genuine checks inside the clone window) and decides each answer with ``domain.field``, exactly as
   alone (a check earlier in the group counts for the two-places signal of a later one);
3. records every check as a ``field_checks`` row, every check that is not genuine or shows a clone
   signal also as a ``field.checked`` event, and every refusal as a ``field.refused`` event
   (``append_events``: a few statements for the group; a genuine check with no clone signal is no ledger
   event, ADR 0015), commits, and only then are the outcomes handed back. A crash before the commit
   leaves no used nonce and no answer.

A group whose transaction fails is decided again answer by answer.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fabguard.domain import field
from fabguard.domain.errors import FabGuardError, Unavailable
from fabguard.pki.field import LeafFacts, TrustedCa, leaf_facts
from fabguard.pki.field_nonce import issued_at, make_nonce, nonce_digest, nonce_expiry
from fabguard.service.authority.authorities import device_issuers
from fabguard.service.core.events import refusal_event
from fabguard.service.core.instance import Instance
from fabguard.service.field.answers import CHECKED, REFUSED, Answer, Origin
from fabguard.store import identities as identity_rows
from fabguard.store.eventlog import NewEvent, append_events
from fabguard.store.field_models import FieldCheck, add_checks, spend_nonces
from fabguard.store.models import Unit

# The instance secret (``KeyStore.secret``) that MACs field nonces: one for every server process.
NONCE_KEY = "field-nonce"


@dataclass(frozen=True, slots=True)
class Pending:
    """An answer ready for its group: its nonce is ours and fresh, its record-free facts are known."""

    answer: Answer
    origin: Origin
    digest: str
    expires: datetime
    leaf: LeafFacts


@dataclass(frozen=True, slots=True)
class Refused:
    """An answer refused before its group (malformed, or a nonce unknown or expired): recorded with it."""

    error: FabGuardError
    origin: Origin


Job = Pending | Refused
Outcome = dict[str, object] | BaseException
Runner = Callable[[Sequence[Job]], list[Outcome]]


def nonce_key(inst: Instance) -> bytes:
    return inst.keys.secret(NONCE_KEY)


def new_challenge(inst: Instance, key: bytes, now: datetime) -> dict[str, str]:
    nonce, expires = make_nonce(key, now)
    return {"nonce": nonce.hex(), "expires_at": expires.isoformat(), "context": field.CHALLENGE_CONTEXT.hex()}


def trusted_cas(s: Session) -> list[TrustedCa]:
    """The CAs that may have issued genuine units (our issuing CAs and site agents' CAs, any state but
    pending): the only anchors a device certificate may chain to. An agent CA's unit is genuine only as the
    certificate its lease's sync recorded (``decide`` asks for the recorded unit)."""
    return [
        TrustedCa(row.name, x509.load_pem_x509_certificate(str(row.certificate_pem).encode()), row.state == "revoked")
        for row in device_issuers(s)
    ]


def device_cas(inst: Instance) -> list[TrustedCa]:
    """``trusted_cas`` in a read of its own (a request's answers are prepared against it; their group
    reads the CAs' states again in its transaction)."""
    with inst.db.read() as s:
        return trusted_cas(s)


def prepare(inst: Instance, answer: Answer, origin: Origin, cas: Sequence[TrustedCa], key: bytes) -> Job:
    """Check the nonce and do the answer's cryptography, before any transaction."""
    now = inst.clock()
    expires = nonce_expiry(key, answer.nonce)
    if expires is None:
        return Refused(field.nonce_error("nonce_unknown"), origin)
    error = field.nonce_refusal(field.nonce_state(issued_at(expires), None, now))
    if error is not None:
        return Refused(error, origin)
    found = leaf_facts(answer.leaf, cas, answer.nonce, answer.signature, now)
    return Pending(answer, origin, nonce_digest(answer.nonce), expires, found)


def decide_group(inst: Instance, jobs: Sequence[Job]) -> list[Outcome]:
    """Decide ``jobs`` in one transaction (see the module's docstring); each outcome is the check's
    answer or the error that refused it. A group that fails is decided again one job at a time, but for
    an outage (``database_unavailable``, a deadlock aside): every job is answered with it at once, since
    deciding each alone would only wait the outage out once per check, and a resend decides them."""
    try:
        return _decide_group(inst, jobs)
    except Unavailable as exc:
        if not exc.contended or len(jobs) == 1:
            return [Unavailable(exc.message, contended=exc.contended) for _ in jobs]
        return [outcome for job in jobs for outcome in _decide_alone(inst, job)]
    except Exception as exc:
        if len(jobs) == 1:
            return [exc]
        return [outcome for job in jobs for outcome in _decide_alone(inst, job)]


def _decide_alone(inst: Instance, job: Job) -> list[Outcome]:
    try:
        return _decide_group(inst, [job])
    except Exception as exc:
        return [exc]


@dataclass
class _Decided:
    """One job's part of the group: its event (none for a genuine check with no clone signal), and for a
    check its answer and row (without the seq and id)."""

    event: NewEvent | None
    answer: dict[str, object] | None = None
    row: dict[str, object] | None = None
    error: FabGuardError | None = None


def _decide_group(inst: Instance, jobs: Sequence[Job]) -> list[Outcome]:
    now = inst.clock()
    with inst.db.transaction() as s:
        spent = _spend(s, jobs, now)
        pending = [j for j in jobs if isinstance(j, Pending) and j.digest in spent]
        serials = {j.leaf.subject_serial for j in pending if j.leaf.subject_serial is not None}
        revoked = {row.name: row.state == "revoked" for row in device_issuers(s)}
        units = _units_of(s, serials)
        earlier = _earlier_checks(s, serials, now)
        decided: list[_Decided] = []
        for job in jobs:
            error = _refusal_of(job, spent, now)
            if error is not None:
                event = refusal_event(REFUSED, error, at=now, actor=job.origin.actor, detail=job.origin.detail())
                decided.append(_Decided(event, error=error))
            else:
                assert isinstance(job, Pending)
                decided.append(_check(job, revoked, units, earlier, now))
        seqs = iter(append_events(s, [d.event for d in decided if d.event is not None]))
        seq_of = [next(seqs) if d.event is not None else None for d in decided]
        ids = iter(
            add_checks(s, [{**d.row, "seq": seq} for d, seq in zip(decided, seq_of, strict=True) if d.row is not None])
        )
    return [
        d.error
        if d.error is not None
        else {**(d.answer or {}), "seq": seq, "check_id": next(ids), "checked_at": now.isoformat()}
        for d, seq in zip(decided, seq_of, strict=True)
    ]


def _spend(s: Session, jobs: Sequence[Job], now: datetime) -> set[str]:
    """Insert the group's fresh nonces (each digest once) into the replay set; the digests it took."""
    rows: dict[str, dict[str, object]] = {}
    for job in jobs:
        if (
            isinstance(job, Pending)
            and job.digest not in rows
            and field.nonce_state(issued_at(job.expires), None, now) is None
        ):
            rows[job.digest] = {
                "nonce_sha256": job.digest,
                "issued_at": issued_at(job.expires),
                "expires_at": job.expires,
                "used_at": now,
                "issued_to": job.origin.actor[:128],
            }
    return spend_nonces(s, list(rows.values()))


def _refusal_of(job: Job, spent: set[str], now: datetime) -> FabGuardError | None:
    """Why a job of the group is refused: refused before it, expired since, or its nonce used (before
    this group, or by an earlier job of it: ``spent`` loses each digest to its first job)."""
    if isinstance(job, Refused):
        return job.error
    late = field.nonce_refusal(field.nonce_state(issued_at(job.expires), None, now))
    if late is not None:
        return late
    if job.digest not in spent:
        return field.nonce_error("nonce_used")
    spent.discard(job.digest)
    return None


def _units_of(s: Session, serials: set[str]) -> dict[str, list[field.UnitRecord]]:
    found: dict[str, list[field.UnitRecord]] = defaultdict(list)
    if serials:
        rows = s.execute(
            select(
                Unit.product_id, Unit.serial, Unit.order_id, Unit.key_fingerprint, Unit.cert_sha256, Unit.revoked_at
            ).where(Unit.serial.in_(sorted(serials)))
        ).all()
        # Whether each unit's serial was allocated to its order, where its product takes only allocated serials.
        allocated = identity_rows.serials_allocated(s, [(p, serial, order) for p, serial, order, *_ in rows])
        for product, serial, order, key_fp, sha, revoked_at in rows:
            record = field.UnitRecord(serial, order, key_fp, sha, revoked_at is not None, allocated[(product, serial)])
            found[serial].append(record)
    return found


def _earlier_checks(s: Session, serials: set[str], now: datetime) -> dict[str, list[field.SeenAt]]:
    """Per serial, the places its genuine checks inside the clone window came from, each with its latest
    check: all ``clone_signal`` needs (the latest check from another place), however often a device is
    checked from its own place."""
    found: dict[str, list[field.SeenAt]] = defaultdict(list)
    if serials:
        latest = func.max(FieldCheck.at)
        rows = s.execute(
            select(FieldCheck.serial, FieldCheck.place, latest)
            .where(
                FieldCheck.serial.in_(sorted(serials)),
                FieldCheck.genuine.is_(True),
                FieldCheck.at >= now - field.CLONE_WINDOW,
            )
            .group_by(FieldCheck.serial, FieldCheck.place)
        )
        for serial, place, at in rows:
            found[str(serial)].append(field.SeenAt(at, place))  # max() keeps the column's type: UTC-aware
    return found


def _check(
    job: Pending,
    revoked: dict[str, bool],
    units: dict[str, list[field.UnitRecord]],
    earlier: dict[str, list[field.SeenAt]],
    now: datetime,
) -> _Decided:
    """One answer's verdict and clone signal, its event and its row; a genuine one counts as seen for
    the group's later checks of its serial."""
    serial = job.leaf.subject_serial
    facts = job.leaf.facts(revoked.get(job.leaf.ca or "", False), units.get(serial or "", []))
    verdict = field.decide(facts)
    origin = job.origin
    seen = earlier[verdict.serial] if verdict.serial is not None else []
    signal, other = field.clone_signal(verdict, origin.place, now, seen if verdict.genuine else [])
    if verdict.genuine and verdict.serial is not None:
        seen.append(field.SeenAt(now, origin.place))
    detail: dict[str, object] = {
        **verdict.to_dict(),
        **origin.detail(),
        "place": origin.place,
        "cert_sha256": facts.cert_sha256,
        "cert_serial": format(job.answer.leaf.serial_number, "x"),
        "clone": signal.value if signal else None,
    }
    if other is not None:
        detail["other_place"] = other
    code = verdict.reason.value if verdict.reason else None
    # A genuine check with no clone signal is this row only; the rest are also ledger events (ADR 0015).
    event = (
        NewEvent(
            CHECKED, now, actor=origin.actor, order_id=verdict.order_id, serial=verdict.serial, code=code, detail=detail
        )
        if not verdict.genuine or signal is not None
        else None
    )
    row: dict[str, object] = {
        "at": now,
        "serial": (verdict.serial or "")[:64] or None,
        "cert_sha256": facts.cert_sha256,
        "genuine": verdict.genuine,
        "reason": code,
        "clone": signal.value if signal else None,
        "place": origin.place[:128],
        "source": origin.source,
        "client": origin.client,
        "actor": origin.actor[:128],
    }
    return _Decided(event, answer=detail, row=row)
