"""Group commit: the units of many requests decided one by one, each on its own, and committed together.

``run_jobs`` takes units (each with its fixture and, if sent, its idempotency key) and decides them in
one transaction, in order, exactly as one unit alone would be decided: the order row locked and read,
the unit's history read after the lock, the pure policies, the quota. The group's own decisions are
facts for the next unit: quota taken so far is counted against the locked order, and a unit whose
serial, key or idempotency key is already in the group waits for the next round (it then sees the
first one committed: the same certificate, or ``key_reused``). Refusals consume nothing and are
recorded in the same transaction. Then the writes of the whole group go in a few multi-row
statements (units, the orders' quota, the events with their Merkle nodes, the idempotency answers)
and one commit; only after the commit does any unit get its answer.

If the group's transaction fails (a rival process took a serial, a key or an idempotency key first,
a lost connection, a bug), nothing of it was answered, and each unit is decided again alone, in a
transaction of its own: the result is what the units would have had arriving one at a time. A crash
loses only unanswered units; quota is never over (the locked count, then ``used + n <= quota`` in the
update, then the table's ``CHECK``). ADR 0011 says why, and what it costs.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fabguard.domain.errors import Conflict, FabGuardError, Refusal, Unavailable
from fabguard.domain.issuance import (
    AttestationPolicy,
    Decision,
    FixtureFacts,
    IssuanceRequest,
    IssuingCaFacts,
    decide_issuance,
    order_found,
)
from fabguard.domain.values import parse_key_types, recorded_order_id, recorded_serial
from fabguard.pki.attestation import Attested
from fabguard.pki.builder import certificate_pem
from fabguard.service.authority.authorities import matter_pai_facts
from fabguard.service.core import idempotency
from fabguard.service.core.events import refusal_event
from fabguard.service.core.idempotency import Answer, Keyed
from fabguard.service.core.instance import Instance
from fabguard.service.provisioning.attestation import check_request, recorded
from fabguard.service.provisioning.identity_draws import IdentityDraws
from fabguard.service.provisioning.unit_requests import DeviceProfile, Provisioned, UnitRequest, UnparsedUnit
from fabguard.service.provisioning.unit_requests import device_profile as new_profile
from fabguard.store import idempotency as key_rows
from fabguard.store.eventlog import NewEvent, append_events
from fabguard.store.issuance_facts import GroupHistory, OrderRow, group_history, insert_units, lock_order
from fabguard.store.quota import take_quota

log = logging.getLogger(__name__)

# A unit decided alone whose insert collided with a rival's (same serial, key or idempotency key) is
# decided again: it then sees the rival's unit and is answered as any retry (same certificate, or a refusal).
_COLLISION_RETRIES = 3


@dataclass(frozen=True, slots=True)
class Job:
    """One unit to decide: who asks, what, and the idempotency key its answer is kept under (if any)."""

    fixture: FixtureFacts
    request: UnitRequest | UnparsedUnit
    key: Keyed | None = None


# Per job: the certificate (no key), the answer kept under its key, or the error to raise to the caller
# (a refusal when no key was sent, an idempotency error, or an unexpected failure).
Outcome = Provisioned | Answer | BaseException

# What decides jobs: ``run_jobs`` here, or a writer thread that groups the jobs of concurrent requests.
Runner = Callable[[Sequence[Job]], list[Outcome]]


class _KeyTaken(Conflict):
    """A rival committed an idempotency key this group was answering: decide the unit again (and if that
    keeps happening, the caller hears the key is at work, and sends again)."""

    def __init__(
        self, message: str = "another request with this Idempotency-Key was answered meanwhile; send it again"
    ) -> None:
        super().__init__(message, code="idempotency_key_in_progress")


def run_jobs(inst: Instance, jobs: Sequence[Job]) -> list[Outcome]:
    """Decide ``jobs`` in order, as few transactions as their conflicts allow; one outcome per job."""
    outcomes: list[Outcome | None] = [None] * len(jobs)
    pending = list(range(len(jobs)))
    while pending:
        now, later = _rounds(jobs, pending)
        for index, outcome in zip(now, _run_round(inst, [jobs[i] for i in now]), strict=True):
            outcomes[index] = outcome
        pending = later
    decided = [o for o in outcomes if o is not None]
    assert len(decided) == len(jobs), "a unit was left undecided"  # outcomes must line up with their jobs
    return decided


def _identities(job: Job) -> list[tuple[str, object]]:
    ids: list[tuple[str, object]] = []
    if job.key is not None:
        ids.append(("key", (job.key.fixture_id, job.key.key, job.key.part)))
    if isinstance(job.request, UnitRequest):
        ids.append(("serial", job.request.serial.value))
        ids.append(("public key", job.request.csr.facts.key_fingerprint))
    return ids


def _rounds(jobs: Sequence[Job], pending: list[int]) -> tuple[list[int], list[int]]:
    """This round: the pending jobs up to the first that repeats an earlier one's serial, key or idempotency
    key; it and all after it wait for the next round, so units are decided in the order they came (a
    later unit never takes the quota an earlier one would have had)."""
    seen: set[tuple[str, object]] = set()
    for at, index in enumerate(pending):
        ids = _identities(jobs[index])
        if not seen.isdisjoint(ids):
            return pending[:at], pending[at:]
        seen.update(ids)
    return pending, []


def _run_round(inst: Instance, jobs: list[Job]) -> list[Outcome]:
    if len(jobs) > 1:
        try:
            return _commit(inst, jobs)
        except Unavailable as outage:
            if not outage.contended:  # an outage: every unit alone would wait it out again; none was answered
                log.warning("a group of %d units met an outage: %s", len(jobs), outage.message)
                return [outage] * len(jobs)
            log.info("a group of %d units met a deadlock; deciding each alone", len(jobs))
        except Exception:  # a rival's unit or key, a bug: nothing of the group was answered; each alone
            log.info("a group of %d units failed; deciding each alone", len(jobs), exc_info=True)
    return [_alone(inst, job) for job in jobs]


def _retried(exc: Exception) -> bool:
    """A collision with a rival's unit or key, or a deadlock: the unit, decided again, sees the rival's work."""
    return isinstance(exc, IntegrityError | _KeyTaken) or (isinstance(exc, Unavailable) and exc.contended)


def _alone(inst: Instance, job: Job) -> Outcome:
    for attempt in range(_COLLISION_RETRIES):
        try:
            return _commit(inst, [job])[0]
        except Exception as exc:  # the caller raises it in the asking thread
            if not _retried(exc) or attempt == _COLLISION_RETRIES - 1:
                return exc
    raise AssertionError("unreachable")


@dataclass
class _Group:
    """What one transaction has decided so far, and what it will write."""

    inst: Instance
    now: datetime
    orders: dict[str, OrderRow | None] = field(default_factory=dict)
    history: GroupHistory = field(default_factory=GroupHistory.empty)
    taken: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    units: list[dict[str, Any]] = field(default_factory=list)
    events: list[NewEvent] = field(default_factory=list)
    answers: list[dict[str, Any]] = field(default_factory=list)
    expired: list[Keyed] = field(default_factory=list)
    cas: dict[str, IssuingCaFacts] = field(default_factory=dict)
    ids: IdentityDraws = field(default_factory=IdentityDraws)
    profiles: dict[tuple[str, str, timedelta | None], DeviceProfile] = field(default_factory=dict)

    def issuing_ca(self, name: str) -> IssuingCaFacts:
        """The facts of an issuing CA, its certificate read once per group."""
        if name not in self.cas:
            pai = matter_pai_facts(self.history.ca_certificates.get(name))
            self.cas[name] = IssuingCaFacts(name, self.history.ca_states.get(name), pai)
        return self.cas[name]

    def device_profile(self, s: Session, ca_name: str, product_id: str, lifetime: timedelta | None) -> DeviceProfile:
        """The product's device profile under ``ca_name``, its constant part built once per group."""
        if (key := (ca_name, product_id, lifetime)) not in self.profiles:
            issuer = self.inst.cas.issuer(ca_name, s)
            self.profiles[key] = new_profile(self.inst, issuer, product_id, lifetime, ca_name)
        return self.profiles[key]

    def answer(self, key: Keyed | None, status: int, body: dict[str, Any], unkeyed: Outcome) -> Outcome:
        """``unkeyed`` when no key was sent, else the answer kept under the key (written with the group)."""
        if key is None:
            return unkeyed
        self.answers.append(
            key_rows.answer_row(key.fixture_id, key.key, key.part, key.fingerprint, self.now, status, body)
        )
        return Answer(status, body)

    def refuse(self, job: Job, refusal: Refusal, order_id: str | None, serial: str | None) -> Outcome:
        self.events.append(
            refusal_event(
                "unit.refused",
                refusal,
                at=self.now,
                fixture_id=job.fixture.id,
                order_id=recorded_order_id(order_id),
                serial=recorded_serial(serial),
                detail={"site_id": job.fixture.site_id},
            )
        )
        return self.answer(job.key, refusal.status, refusal.to_dict(), refusal)

    @property
    def keys_forgotten_before(self) -> datetime:
        return idempotency.expired_before(self.inst, self.now)

    def write(self, s: Session) -> None:
        for key in self.expired:
            key_rows.delete_expired(s, self.keys_forgotten_before, fixture_id=key.fixture_id, key=key.key)
        # Unique index entries in one order in every process: two groups inserting the same serials
        # wait for each other in turn instead of deadlocking.
        insert_units(s, sorted(self.units, key=lambda u: (u["product_id"], u["serial"])))
        self.ids.write(s)
        for order_id, n in self.taken.items():
            if not take_quota(s, order_id, n):  # the order is locked: only a bug gets here
                raise AssertionError(f"order {order_id}: {n} units counted against its quota do not fit")
        append_events(s, self.events)
        answers = sorted(self.answers, key=lambda a: (a["fixture_id"], a["key"], a["part"]))
        if key_rows.insert_answered(s, answers) != len(self.answers):
            raise _KeyTaken


def _commit(inst: Instance, jobs: list[Job]) -> list[Outcome]:
    group = _Group(inst, inst.clock())
    with inst.db.transaction() as s:
        stored = _stored_answers(s, group, jobs)
        # Lock every order of the group first, in one order (two groups never wait on each other in a
        # cycle); each unit's history is read after the locks, so it sees what a rival holding them wrote.
        for order_id in sorted({j.request.order_id.value for j in jobs if isinstance(j.request, UnitRequest)}):
            group.orders[order_id] = lock_order(s, order_id)
        group.ids = _identity_draws(s, group, jobs)
        group.history = _history(s, group, [j for i, j in enumerate(jobs) if i not in stored])
        outcomes = [stored[i] if i in stored else _decide(s, group, job) for i, job in enumerate(jobs)]
        group.write(s)
    return outcomes


def _history(s: Session, group: _Group, jobs: list[Job]) -> GroupHistory:
    asks, cas = [], set()
    for job in jobs:
        unit = job.request
        if isinstance(unit, UnitRequest) and (order := group.orders[unit.order_id.value]) is not None:
            facts = order.facts
            asks.append((facts.product_id, unit.serial.value, unit.csr.facts.key_fingerprint, facts.site_id))
            cas.add(order.issuing_ca)
    return group_history(s, asks, sorted(cas))


def _identity_draws(s: Session, group: _Group, jobs: list[Job]) -> IdentityDraws:
    """The pools of the group's products, locked after its orders, with its serials' allocations."""
    products, order_ids, serials = [], [], []
    for job in jobs:
        if isinstance(job.request, UnitRequest) and (order := group.orders[job.request.order_id.value]) is not None:
            products.append(order.facts.product_id)
            order_ids.append(order.facts.id)
            serials.append((order.facts.product_id, job.request.serial.value))
    return IdentityDraws.load(s, products, order_ids, serials)


def _stored_answers(s: Session, group: _Group, jobs: list[Job]) -> dict[int, Outcome]:
    """The jobs whose idempotency key already has an answer (a resend): that answer, or why it cannot be."""
    keyed = [(i, j.key) for i, j in enumerate(jobs) if j.key is not None]
    if not keyed:
        return {}
    rows = key_rows.find_keys(s, [(k.fixture_id, k.key, k.part) for _, k in keyed])
    before = group.keys_forgotten_before
    stored: dict[int, Outcome] = {}
    for index, key in keyed:
        row = rows.get((key.fixture_id, key.key, key.part))
        if row is None:
            continue
        if row.created_at < before:  # forgotten: taken again below
            group.expired.append(key)
            continue
        try:
            stored[index] = idempotency.stored_answer(row, key)
        except FabGuardError as exc:
            stored[index] = exc
    return stored


def _decide(s: Session, group: _Group, job: Job) -> Outcome:
    unit = job.request
    if isinstance(unit, UnparsedUnit):
        if isinstance(unit.error, Refusal):
            return group.refuse(job, unit.error, unit.order_id, unit.serial)
        return unit.error
    try:
        return _issue(s, group, job, unit)
    except Refusal as refusal:
        return group.refuse(job, refusal, unit.order_id.value, unit.serial.value)


def _issue(s: Session, group: _Group, job: Job, unit: UnitRequest) -> Outcome:
    inst, now, fixture = group.inst, group.now, job.fixture
    serial, checked = unit.serial, unit.csr
    order = order_found(unit.order_id.value, group.orders[unit.order_id.value])
    facts = replace(order.facts, used=order.facts.used + group.taken[order.facts.id])
    ca_name, product_id = order.issuing_ca, facts.product_id
    # The test gate reads the order's site's records: a record from another site's fixture decides nothing here.
    history, existing = group.history.of(product_id, serial.value, checked.facts.key_fingerprint, facts.site_id)
    policy = AttestationPolicy(order.attestation_policy)
    attestation_facts, attested = check_request(s, policy, product_id, unit.attestation, checked.csr, now)
    request = IssuanceRequest(
        fixture=fixture,
        order=facts,
        allowed_key_types=parse_key_types(order.key_types.split(",")),
        serial=serial,
        csr=checked.facts,
        history=history,
        now=now,
        issuing_ca=group.issuing_ca(ca_name),
        attestation=attestation_facts,
        identity=group.ids.facts(product_id, facts.id, serial.value),
    )
    # quota_left among the policies: the locked count plus the group's own units
    if decide_issuance(request) is Decision.REPLAY:
        # An idempotent retry: the same unit with the same key gets the same certificate, for free.
        assert existing is not None
        chain, ident = inst.cas.chain_pem(ca_name, s), group.ids.existing(product_id, serial.value)
        again = Provisioned(serial.value, facts.id, existing.certificate_pem, chain, True, ident)
        return group.answer(job.key, 200, again.to_dict(), again)
    lifetime = timedelta(days=order.cert_lifetime_days) if order.cert_lifetime_days else None
    profile = group.device_profile(s, ca_name, product_id, lifetime)
    cert = profile.certificate(checked.public_key, serial, now, checked.key_id)
    chain = inst.cas.chain_pem(ca_name, s)  # all that can fail comes before the unit joins the group's writes
    group.taken[facts.id] += 1
    ident = group.ids.existing(product_id, serial.value)
    if ident is None and request.identity.draws:  # its MAC addresses and Matter data, drawn now
        ident, drawn = group.ids.draw(s, product_id, facts.id, serial.value, fixture.id, now)
        group.events.append(drawn)
    pem = _add_unit(group, job, unit, facts.id, product_id, ca_name, cert, attested)
    done = Provisioned(serial.value, facts.id, pem, chain, False, ident)
    return group.answer(job.key, 201, done.to_dict(), done)


def _add_unit(
    group: _Group,
    job: Job,
    unit: UnitRequest,
    order_id: str,
    product_id: str,
    ca_name: str,
    cert: x509.Certificate,
    attested: Attested | None,
) -> str:
    """Add the issued unit and its ``unit.provisioned`` event to the group's writes; its certificate's PEM."""
    now, fixture, serial, key_fingerprint = group.now, job.fixture, unit.serial, unit.csr.facts.key_fingerprint
    der = cert.public_bytes(serialization.Encoding.DER)
    pem, cert_sha256 = certificate_pem(der), hashlib.sha256(der).hexdigest()
    cert_serial = format(cert.serial_number, "x")
    group.units.append(
        {
            "product_id": product_id,
            "serial": serial.value,
            "order_id": order_id,
            "fixture_id": fixture.id,
            "key_fingerprint": key_fingerprint,
            "cert_serial": cert_serial,
            "cert_sha256": cert_sha256,
            "issuing_ca": ca_name,
            "certificate_pem": pem,
            "issued_at": now,
            "attestation": recorded(attested),
        }
    )
    group.events.append(
        NewEvent(
            "unit.provisioned",
            now,
            actor=f"fixture:{fixture.id}",
            order_id=order_id,
            fixture_id=fixture.id,
            serial=serial.value,
            detail={
                "cert_serial": cert_serial,
                "cert_sha256": cert_sha256,
                "key_fingerprint": key_fingerprint,
                "site_id": fixture.site_id,
                "product_id": product_id,
                **({"attestation": attested.to_dict()} if attested is not None else {}),
            },
        )
    )
    return pem
