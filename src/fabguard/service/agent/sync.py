"""A site agent's log coming home: verify it, fold it into the main ledger, record its units (issue 18).

One transaction folds a verified sync: each new agent entry becomes a central event naming the agent
(``actor`` ``agent:<lease id>``, the agent's index and actor in its detail); each unit the agent issued
becomes a unit of the order, under the agent CA, so field checks and revocation know it. A unit whose key
or serial the central server already knows (issued by the server or by another agent) is not recorded: it is
a clone, folded as a ``unit.refused`` event (``key_reused`` / ``serial_has_other_key``), which the existing
detectors raise as a critical alert. A sync that does not verify changes nothing but the lease's state: it
is recorded as ``lease.sync_refused`` (an alert too) and the lease holds a discrepancy, which refuses new
leases for its order and site until someone resolves it.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.orm import Session

from fabguard.domain.errors import Conflict, InvalidRequest, NotFound, Refusal
from fabguard.domain.issuance import UnitHistory, synced_unit_unseen
from fabguard.ledger.agent_sync import PROVISIONED, SyncConflict, SyncDiscrepancy, VerifiedSync, verify_sync
from fabguard.ledger.lease import open_bundle
from fabguard.ledger.lease_end import CLOSED
from fabguard.ledger.merkle import EMPTY_ROOT
from fabguard.pki import agent_status
from fabguard.service.agent import quota_leases
from fabguard.service.core.instance import Instance
from fabguard.service.ledger import ledger_keys
from fabguard.service.ledger.merkle_log import public_verifier_key
from fabguard.store.eventlog import NewEvent, append_event, append_events
from fabguard.store.issuance_facts import key_owners, serial_keys
from fabguard.store.models import CertificateAuthority, Event, Fixture, OcspResponder, Unit
from fabguard.store.quota_leases import QuotaLease

SYNC_FORMAT = "fabguard-agent-sync-v1"
_KIND_LIMIT = 40  # events.kind
AGENT_KIND_PREFIX = "agent."


@dataclass(frozen=True)
class SyncPackage:
    """What ``fabguard agent sync`` sends: the lease, the agent's signed checkpoint, its log, its certificates."""

    lease_id: str
    checkpoint: str
    entries: list[bytes]
    certificates: dict[str, str]
    # The agent CA's delegation to the central status signer (PEM), from an agent whose lease named one.
    status_signer: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": SYNC_FORMAT,
                "lease_id": self.lease_id,
                "checkpoint": self.checkpoint,
                "entries": [base64.b64encode(e).decode() for e in self.entries],
                "certificates": self.certificates,
            }
            | ({} if self.status_signer is None else {"status_signer": self.status_signer})
        )

    @classmethod
    def from_json(cls, data: Any) -> SyncPackage:
        """The package in ``data`` (its parsed JSON: the API's body, or the file's)."""
        try:
            if data.get("format") != SYNC_FORMAT:
                raise ValueError(f"the format is not {SYNC_FORMAT}")
            return cls(
                lease_id=str(data["lease_id"]),
                checkpoint=str(data["checkpoint"]),
                entries=[base64.b64decode(str(e), validate=True) for e in data["entries"]],
                certificates={str(k): str(v) for k, v in dict(data["certificates"]).items()},
                status_signer=None if data.get("status_signer") is None else str(data["status_signer"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise InvalidRequest(f"not an agent sync package: {exc}", code="lease_sync_invalid") from None


def agent_kind(kind: str) -> str:
    """The central kind of an agent's event: under ``agent.``, kept apart from the server's own test records and
    orders (the server makes no ``agent.*`` event of its own). The agent's own kinds already say ``agent.``
    (``agent.initialized``, ``agent.sync_prepared``) and keep it once; syncs before this folded them as
    ``agent.agent.*``, and those events stay in the ledger as they were signed (nothing reads their kind)."""
    return (kind if kind.startswith(AGENT_KIND_PREFIX) else f"{AGENT_KIND_PREFIX}{kind}")[:_KIND_LIMIT]


def parse_sync_package(text: str | bytes) -> SyncPackage:
    """Read the file ``fabguard agent sync --out`` wrote."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidRequest(f"not an agent sync package: {exc}", code="lease_sync_invalid") from None
    return SyncPackage.from_json(data)


def sync_lease(inst: Instance, package: SyncPackage, *, actor: str) -> dict[str, object]:
    """Verify and fold one agent sync; a discrepancy is recorded, raised as an alert, and refused."""
    with inst.db.read() as s:
        row = s.get(QuotaLease, package.lease_id)
        if row is None:
            raise NotFound(f"no lease {package.lease_id!r}", code="lease_not_found")
        ca_row = s.get(CertificateAuthority, row.agent_ca)
        assert ca_row is not None and ca_row.certificate_pem is not None
        previous = (row.synced_size, bytes(row.synced_root) if row.synced_root else EMPTY_ROOT)
    bundle = json.loads(row.bundle)
    # Signed by whichever of the ledger's keys signed when it was issued (a rotation may have come since).
    issuer = str(bundle.get("lease", {}).get("issuer_key", ""))
    lease = open_bundle(bundle, issuer if issuer in ledger_keys.verifiers(inst) else public_verifier_key(inst))
    agent_ca = x509.load_pem_x509_certificate(ca_row.certificate_pem.encode())
    try:
        verified = verify_sync(lease, agent_ca, package.entries, package.checkpoint, package.certificates, previous)
        if verified.resent:
            with inst.db.read() as s:
                return _earlier(s, row.id, row.order_id)
        signer = _status_signer(inst, bundle, agent_ca, package.status_signer)
        return _fold(inst, row.id, row.agent_ca, lease.product_id, verified, previous[0], actor, signer)
    except SyncDiscrepancy as exc:  # _fold's transaction is rolled back: only the refusal is written
        _record_discrepancy(inst, row, exc, actor)
        raise


def _earlier(s: Session, lease_id: str, order_id: str) -> dict[str, object]:
    """The answer given when this log was accepted (an agent whose answer was lost sends it again)."""
    details = s.execute(
        select(Event.detail).where(Event.kind == "lease.synced", Event.order_id == order_id).order_by(Event.seq.desc())
    ).scalars()
    for text in details:
        summary = json.loads(text)
        if summary.get("lease_id") == lease_id:
            return {**summary, "resent": True}
    raise Conflict(f"lease {lease_id} has no accepted sync to answer again", code="lease_sync_replayed")


def _status_signer(
    inst: Instance, bundle: dict[str, Any], agent_ca: x509.Certificate, pem: str | None
) -> x509.Certificate | None:
    """The agent CA's delegation to this server's status signer (ADR 0020), checked: signed by the agent CA,
    for the key the lease named, as OCSP responder and CRL issuer. None if the lease named no status key."""
    publication = bundle.get("publication")
    if pem is None or not isinstance(publication, dict):
        return None
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise SyncDiscrepancy(code="lease_sync_invalid", message="the status signer is not a certificate") from None
    key = inst.keys.load(inst.keys.ref_for(quota_leases.status_key_name(str(publication["ca"])))).public_key()
    problem = agent_status.status_signer_problem(cert, agent_ca, key)
    if problem is not None:
        raise SyncDiscrepancy(code="lease_sync_invalid", message=f"the agent CA's status signer: {problem}")
    return cert


def _keep_status_signer(inst: Instance, s: Session, agent_ca: str, signer: x509.Certificate | None) -> None:
    """Make ``signer`` (with this server's key for it) the agent CA's OCSP responder and CRL issuer, once: it
    lasts the agent CA's life, since nobody can renew it once the agent is gone."""
    if signer is None or s.execute(select(OcspResponder.id).where(OcspResponder.ca == agent_ca)).first() is not None:
        return
    s.add(
        OcspResponder(
            ca=agent_ca,
            key_ref=inst.keys.ref_for(quota_leases.status_key_name(agent_ca)),
            certificate_pem=signer.public_bytes(serialization.Encoding.PEM).decode(),
            cert_serial=format(signer.serial_number, "x"),
            not_after=signer.not_valid_after_utc,
            created_at=inst.clock(),
        )
    )


def _fold(
    inst: Instance,
    lease_id: str,
    agent_ca: str,
    product_id: str,
    verified: VerifiedSync,
    before: int,
    actor: str,
    signer: x509.Certificate | None = None,
) -> dict[str, object]:
    now = inst.clock()
    clones: list[str] = []
    with inst.db.transaction() as s:
        row = s.get(QuotaLease, lease_id, with_for_update=True)
        assert row is not None
        if row.synced_size == verified.checkpoint.size and bytes(row.synced_root or b"") == verified.checkpoint.root:
            return _earlier(s, lease_id, row.order_id)  # the same log, accepted meanwhile
        _still_open(row, verified, before)
        clone_of = _clone_codes(s, product_id, verified)
        by_index = {u.index: u for u in verified.new_units}
        events: list[NewEvent] = []
        for e in verified.new_entries:
            index, detail = int(e["index"]), dict(e["detail"])
            kind, code = str(e["kind"]), e.get("code")
            unit = by_index.get(index)
            if unit is not None and clone_of[index] is not None:
                kind, code = "unit.refused", clone_of[index]
                detail["message"] = f"the agent issued {unit.serial} with a key or serial the server already knows"
                clones.append(unit.serial)
            elif unit is not None:
                s.add(
                    Unit(
                        product_id=product_id,
                        serial=unit.serial,
                        order_id=row.order_id,
                        fixture_id=unit.fixture_id,
                        key_fingerprint=unit.key_fingerprint,
                        cert_serial=unit.cert_serial,
                        cert_sha256=unit.cert_sha256,
                        issuing_ca=agent_ca,
                        certificate_pem=unit.certificate_pem,
                        issued_at=unit.at,
                    )
                )
            elif kind not in (PROVISIONED, "unit.refused"):
                kind = agent_kind(kind)
            detail["agent"] = {"lease_id": lease_id, "index": index, "actor": e.get("actor"), "at": e.get("at")}
            events.append(
                NewEvent(
                    kind,
                    now,
                    actor=f"agent:{lease_id}",
                    order_id=e.get("order_id"),
                    fixture_id=e.get("fixture_id"),
                    serial=e.get("serial"),
                    code=code,
                    detail=detail,
                )
            )
        s.flush()
        append_events(s, events)
        _keep_status_signer(inst, s, agent_ca, signer)
        row.synced_size, row.synced_root, row.synced_at = verified.checkpoint.size, verified.checkpoint.root, now
        row.units_synced = verified.units_total
        if clones:
            row.state, row.discrepancy = "discrepancy", f"clones: {', '.join(clones[:20])}"
        summary = {
            "lease_id": lease_id,
            "size": verified.checkpoint.size,
            "entries": len(verified.new_entries),
            "units": len(verified.new_units) - len(clones),
            "units_synced": verified.units_total,
            "clones": clones,
        }
        append_event(s, "lease.synced", at=now, actor=actor, order_id=row.order_id, detail=summary)
    return summary


def _still_open(row: QuotaLease, verified: VerifiedSync, before: int) -> None:
    """Refuse a sync of a closed lease (ADR 0022: its unused units are the order's again, so nothing of it may
    count now), or one whose lease was synced since it was verified."""
    if row.state == CLOSED:
        raise SyncConflict(
            code="lease_closed",
            message=f"lease {row.id} is closed: its agent's log of size {verified.checkpoint.size} brings "
            f"{len(verified.new_units)} units made after its final sync, refused as overproduction",
        )
    if row.synced_size != before:
        raise Conflict(f"lease {row.id} was synced meanwhile; send the agent's log again", code="lease_sync_replayed")


def _clone_codes(s: Session, product_id: str, verified: VerifiedSync) -> dict[int, str | None]:
    """Each new unit's clone code (``synced_unit_unseen``): its key or serial known to the server, or else
    to an earlier unit of this sync. A certificate serial the server (or this sync) already holds, or an
    unknown fixture, is a discrepancy: the agent CA's serials are its own random ones, and the lease names
    the site's fixtures. The server's facts for the whole sync are read in four statements."""
    units = verified.new_units
    fixtures = set(s.execute(select(Fixture.id).where(Fixture.id.in_(sorted({u.fixture_id for u in units})))).scalars())
    owners = key_owners(s, sorted({u.key_fingerprint for u in units}))
    serial_key = serial_keys(s, product_id, sorted({u.serial for u in units}))
    taken = set(
        s.execute(
            select(Unit.cert_serial).where(Unit.cert_serial.in_(sorted({u.cert_serial for u in units})))
        ).scalars()
    )
    synced_owners: dict[str, str] = {}  # this sync's recorded units: key -> serial, serial -> key
    synced_keys: dict[str, str] = {}
    codes: dict[int, str | None] = {}
    for u in units:
        where = f"unit {u.serial} (entry {u.index})"
        if u.fixture_id not in fixtures:
            raise SyncDiscrepancy(code="lease_sync_invalid", message=f"{where} names unknown fixture {u.fixture_id!r}")
        known = UnitHistory(None, serial_key.get(u.serial), owners.get(u.key_fingerprint))
        synced = UnitHistory(None, synced_keys.get(u.serial), synced_owners.get(u.key_fingerprint))
        codes[u.index] = _clone_code(u.serial, u.key_fingerprint, known) or _clone_code(
            u.serial, u.key_fingerprint, synced
        )
        if codes[u.index] is None:  # only a unit recorded holds its key, serial and certificate
            if u.cert_serial in taken:
                raise SyncDiscrepancy(code="lease_sync_invalid", message=f"{where}: its certificate serial is taken")
            synced_owners[u.key_fingerprint], synced_keys[u.serial] = u.serial, u.key_fingerprint
            taken.add(u.cert_serial)
    return codes


def _clone_code(serial: str, key_fingerprint: str, history: UnitHistory) -> str | None:
    try:
        synced_unit_unseen(serial, key_fingerprint, history)
    except Refusal as clone:
        return clone.code
    return None


def _record_discrepancy(inst: Instance, row: QuotaLease, exc: SyncDiscrepancy, actor: str) -> None:
    now = inst.clock()
    with inst.db.transaction() as s:
        locked = s.get(QuotaLease, row.id, with_for_update=True)
        assert locked is not None
        # A closed lease stays closed (its units were returned once: resolving must not reopen it), its discrepancy
        # standing against new leases all the same.
        locked.state = locked.state if locked.state == CLOSED else "discrepancy"
        locked.discrepancy = f"{exc.code}: {exc.message}"[:2000]
        append_event(
            s,
            "lease.sync_refused",
            at=now,
            actor=actor,
            order_id=row.order_id,
            code=exc.code,
            detail={"lease_id": row.id, "site_id": row.site_id, "message": exc.message},
        )


def resolve_discrepancy(inst: Instance, lease_id: str, *, note: str, actor: str) -> dict[str, object]:
    """Close a lease's discrepancy after it was looked into (new leases for its order and site then go again)."""
    if not note or len(note) > 500 or not note.isprintable():
        raise InvalidRequest("resolving needs a note of 1-500 printable characters", code="invalid_note")
    with inst.db.transaction() as s:
        row = s.get(QuotaLease, lease_id, with_for_update=True)
        if row is None:
            raise NotFound(f"no lease {lease_id!r}", code="lease_not_found")
        if row.state != "discrepancy" and not (row.state == CLOSED and row.discrepancy is not None):
            raise Conflict(f"lease {lease_id} has no discrepancy", code="lease_discrepancy")
        append_event(
            s,
            "lease.resolved",
            at=inst.clock(),
            actor=actor,
            order_id=row.order_id,
            detail={"lease_id": lease_id, "discrepancy": row.discrepancy, "note": note},
        )
        row.state, row.discrepancy = (CLOSED if row.state == CLOSED else "resolved"), None
        return {"lease_id": lease_id, "state": row.state}
