"""Fixtures (test stations at a CM site): one-time enrolment, certificate authentication, revocation."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from fabguard.domain.errors import Conflict, InvalidRequest, NotFound, Refusal, Unauthorized
from fabguard.domain.issuance import FixtureFacts, active_fixture
from fabguard.domain.ratelimit import EventAllowance
from fabguard.domain.values import FixtureId, SiteId
from fabguard.pki import profiles
from fabguard.pki.csr import load_csr, proven_public_key
from fabguard.service.authority.revocation import refresh_crl
from fabguard.service.core import server_tls
from fabguard.service.core.auth_cache import FixtureIdentity
from fabguard.service.core.events import record_refusal
from fabguard.service.core.instance import Instance
from fabguard.store.auth_generation import bump_auth_generation, read_auth_generation
from fabguard.store.eventlog import append_event
from fabguard.store.models import EnrollmentToken, Fixture, Site

ENROLL_PREFIX = "fge_"


@dataclass(frozen=True)
class Enrollment:
    fixture_id: str
    site_id: str
    certificate_pem: str
    chain_pem: list[str]
    server_ca_pem: list[str]

    def to_dict(self) -> dict[str, object]:
        return {
            "fixture_id": self.fixture_id,
            "site_id": self.site_id,
            "certificate": self.certificate_pem,
            "chain": self.chain_pem,
            "ca_certificates": self.server_ca_pem,
        }


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def cert_fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def create_fixture(inst: Instance, *, fixture_id: FixtureId, site_id: SiteId, actor: str) -> tuple[Fixture, str]:
    """Register a fixture for a site and return its one-time enrolment token (shown once)."""
    fid, sid = fixture_id.value, site_id.value
    now = inst.clock()
    token = ENROLL_PREFIX + secrets.token_urlsafe(24)
    try:
        with inst.db.transaction() as s:
            if s.get(Site, sid) is None:
                raise NotFound(f"no site {sid!r}", code="site_not_found")
            fixture = Fixture(id=fid, site_id=sid, created_at=now)
            s.add(fixture)
            s.flush()
            s.add(
                EnrollmentToken(
                    token_hash=_hash(token),
                    fixture_id=fid,
                    expires_at=now + timedelta(hours=inst.limits.enrollment_token_hours),
                )
            )
            append_event(s, "fixture.created", at=now, actor=actor, fixture_id=fid, detail={"site_id": sid})
    except IntegrityError:
        raise Conflict(f"fixture {fid} already exists", code="fixture_exists") from None
    return fixture, token


def new_enrollment_token(inst: Instance, fixture_id: FixtureId, *, actor: str) -> str:
    """A fresh one-time token, e.g. to re-enrol a fixture whose key was lost. Earlier tokens lapse."""
    fid = fixture_id.value
    now = inst.clock()
    token = ENROLL_PREFIX + secrets.token_urlsafe(24)
    with inst.db.transaction() as s:
        fixture = s.get(Fixture, fid)
        if fixture is None:
            raise NotFound(f"no fixture {fid!r}", code="fixture_not_found")
        if fixture.revoked_at is not None:
            raise Conflict(f"fixture {fid} is revoked", code="fixture_revoked")
        s.execute(
            update(EnrollmentToken)
            .where(EnrollmentToken.fixture_id == fid, EnrollmentToken.used_at.is_(None))
            .values(used_at=now)
        )
        s.add(
            EnrollmentToken(
                token_hash=_hash(token),
                fixture_id=fid,
                expires_at=now + timedelta(hours=inst.limits.enrollment_token_hours),
            )
        )
        append_event(s, "fixture.token_issued", at=now, actor=actor, fixture_id=fid)
    return token


def enroll_fixture(inst: Instance, *, token: str, csr_data: bytes) -> Enrollment:
    """Exchange a one-time token and a CSR for a station certificate."""
    if not token.startswith(ENROLL_PREFIX) or len(token) > 100:
        raise Unauthorized("the enrolment token is malformed", code="enrollment_token_invalid")
    public_key, _ = proven_public_key(load_csr(csr_data, inst.limits.max_csr_bytes))
    now = inst.clock()
    station = inst.cas.issuer("station")
    # What the fixture verifies this server with: the station chain, and the operator's CA if it serves theirs.
    server_trust = server_tls.server_trust_pems(inst.home, inst.cas.chain_pem("station"))
    with inst.db.transaction() as s:
        row = s.get(EnrollmentToken, _hash(token), with_for_update=True)
        if row is None or row.used_at is not None or row.expires_at <= now:
            raise Unauthorized("the enrolment token is unknown, used or expired", code="enrollment_token_invalid")
        fixture = s.get(Fixture, row.fixture_id, with_for_update=True)
        assert fixture is not None
        active_fixture(FixtureFacts(fixture.id, fixture.site_id, revoked=fixture.revoked_at is not None))
        cert = profiles.fixture_certificate(
            station,
            public_key,
            inst.config.organization,
            fixture.id,
            fixture.site_id,
            now,
            inst.limits.fixture_cert_days,
            crl_url=inst.cas.crl_url("station"),
            ca_issuers_url=inst.cas.ca_issuers_url("station"),
            ocsp_url=inst.cas.ocsp_url("station"),
        )
        der = cert.public_bytes(serialization.Encoding.DER)
        row.used_at = now
        fixture.enrolled_at = now
        fixture.cert_fingerprint = cert_fingerprint(der)
        fixture.cert_serial = format(cert.serial_number, "x")
        fixture.cert_not_after = cert.not_valid_after_utc
        bump_auth_generation(s)  # the fixture's earlier certificate, if any, is remembered nowhere after this
        append_event(
            s,
            "fixture.enrolled",
            at=now,
            actor=f"fixture:{fixture.id}",
            fixture_id=fixture.id,
            detail={"cert_serial": fixture.cert_serial, "site_id": fixture.site_id},
        )
        enrollment = Enrollment(
            fixture_id=fixture.id,
            site_id=fixture.site_id,
            certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
            chain_pem=inst.cas.chain_pem("station"),
            server_ca_pem=server_trust,
        )
    return enrollment


def authenticate_fixture(
    inst: Instance, cert_der: bytes | None, *, route: str, anonymous: EventAllowance | None = None
) -> FixtureFacts:
    """Map the TLS-verified client certificate to an enrolled, active fixture, or refuse (and record it,
    naming the caller: the fixture, else the certificate as ``cert:<SHA-256, 16 hex digits>``). A caller
    without a certificate is recorded only as fast as ``anonymous`` allows, if given (as tokens do)."""
    if not cert_der:
        refusal = Refusal("unauthorized", "this call needs the fixture's TLS client certificate")
        left_out = anonymous.admit(time.monotonic()) if anonymous is not None else 0
        if left_out is None:
            raise refusal
        raise _refuse(inst, refusal, route, detail={"unrecorded_before": left_out} if left_out else None)
    fp = cert_fingerprint(cert_der)
    now = inst.clock()
    # From this process's memory while the auth generation stands (ADR 0017); read first, so that facts read
    # after it are kept under it and a revocation committed in between bumps it past them.
    generation = read_auth_generation(inst.db)
    known = _known(inst, generation, fp, now)
    if known is not None:
        return known
    with inst.db.read() as s:  # the columns, not the ORM object
        fixture = s.execute(
            select(Fixture.id, Fixture.site_id, Fixture.revoked_at, Fixture.cert_not_after).where(
                Fixture.cert_fingerprint == fp
            )
        ).one_or_none()
    if fixture is None:
        subject = _subject_of(cert_der)
        raise _refuse(
            inst,
            Refusal("unknown_fixture", f"no enrolled fixture holds the certificate {subject}"),
            route,
            actor=f"cert:{fp[:16]}",
            detail={"cert_sha256": fp, "subject": subject},
        )
    facts = FixtureFacts(fixture.id, fixture.site_id, revoked=fixture.revoked_at is not None)
    try:
        active_fixture(facts)
    except Refusal as refusal:
        raise _refuse(inst, refusal, route, fixture.id) from None
    if fixture.cert_not_after is not None and fixture.cert_not_after <= now:
        raise _refuse(
            inst,
            Refusal("unknown_fixture", f"the certificate of fixture {fixture.id} has expired"),
            route,
            fixture.id,
        )
    inst.fixture_identities.put(generation, fp, FixtureIdentity(facts, fixture.cert_not_after))
    return facts


def _known(inst: Instance, generation: int, fp: str, now: datetime) -> FixtureFacts | None:
    known = inst.fixture_identities.get(generation, fp)
    if known is not None and (known.cert_not_after is None or known.cert_not_after > now):
        return known.facts
    return None


def generation_is_local(inst: Instance) -> bool:
    """Whether reading the auth generation is a local read that waits for no writer, fit for an event loop
    (ADR 0021): SQLite in WAL mode, where readers read the last commit while a writer writes. On PostgreSQL
    it is a round trip to the server, for a worker thread."""
    return inst.db.is_sqlite


def remembered_fixture(inst: Instance, cert_der: bytes | None) -> FixtureFacts | None:
    """The active fixture holding ``cert_der`` as this process remembers it under the current auth generation
    (one read of one value, no write, no refusal): what :func:`authenticate_fixture` answers first. None when
    there is no certificate, the generation moved, the certificate is not remembered or has expired: then
    :func:`authenticate_fixture` decides (and records any refusal)."""
    if not cert_der:
        return None
    generation = read_auth_generation(inst.db)
    return _known(inst, generation, cert_fingerprint(cert_der), inst.clock())


def _subject_of(der: bytes) -> str:
    try:
        return x509.load_der_x509_certificate(der).subject.rfc4514_string()[:200]
    except ValueError:
        return "(unparsable)"


def _refuse(
    inst: Instance,
    refusal: Refusal,
    route: str,
    fixture_id: str | None = None,
    *,
    actor: str | None = None,
    detail: dict[str, object] | None = None,
) -> Refusal:
    record_refusal(
        inst,
        "request.refused",
        refusal,
        actor=actor,
        fixture_id=fixture_id,
        detail={"route": route, **(detail or {})},
    )
    return refusal


def revoke_fixture(inst: Instance, fixture_id: FixtureId, *, reason: str, actor: str) -> Fixture:
    if not reason or len(reason) > 500 or not reason.isprintable():
        raise InvalidRequest("a revocation needs a reason of 1-500 printable characters", code="invalid_reason")
    fid = fixture_id.value
    now = inst.clock()
    with inst.db.transaction() as s:
        fixture = s.get(Fixture, fid, with_for_update=True)
        if fixture is None:
            raise NotFound(f"no fixture {fid!r}", code="fixture_not_found")
        if fixture.revoked_at is not None:
            raise Conflict(f"fixture {fid} is already revoked", code="fixture_revoked")
        fixture.revoked_at, fixture.revoked_reason = now, reason
        bump_auth_generation(s)  # every server process forgets it before its next request
        append_event(s, "fixture.revoked", at=now, actor=actor, fixture_id=fid, detail={"reason": reason})
    refresh_crl(inst, "station")
    return fixture


def list_fixtures(inst: Instance) -> list[Fixture]:
    with inst.db.read() as s:
        return list(s.execute(select(Fixture).order_by(Fixture.site_id, Fixture.id)).scalars())


def fixture_dict(f: Fixture) -> dict[str, object]:
    state = "revoked" if f.revoked_at else ("enrolled" if f.enrolled_at else "awaiting_enrollment")
    return {
        "id": f.id,
        "site_id": f.site_id,
        "state": state,
        "created_at": f.created_at.isoformat(),
        "enrolled_at": f.enrolled_at.isoformat() if f.enrolled_at else None,
        "cert_serial": f.cert_serial,
        "cert_not_after": f.cert_not_after.isoformat() if f.cert_not_after else None,
        "revoked_at": f.revoked_at.isoformat() if f.revoked_at else None,
        "revoked_reason": f.revoked_reason,
    }
