"""Hand-off to device clouds: what AWS IoT Core and Azure IoT Hub DPS need to trust an issuing CA's devices,
and a signed manifest of an order's devices.

An issuing CA's devices include those its orders' site agents issued under quota leases (ADR 0010): they
chain to the root through the agent's own CA, so each such CA comes along (its certificate, its chain to
the root, and how to register it: AWS IoT in SNI_ONLY mode, Azure DPS as a certificate marked verified on
upload, since its key is at the site and no proof of possession can be made here), and the agent's synced
units are in the bulk registration under their own CA.

A verification certificate is signed by a CA key, so it is a dangerous act: it is issued inside the
transaction that records it (``handoff.aws`` / ``handoff.azure``), and returned only once that commits.
A refused attempt is recorded as ``handoff.refused``. A manifest is signed with the ledger key (like the
reconciliation reports, checked offline by ``fabguard audit verify-report``) at a checkpoint signed when it
is made, and recorded as ``handoff.manifest``: handing it off is an act, so its route is a POST by an
engineer or admin (``POST /api/v1/handoff/manifest/{order_id}``; a GET never writes).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.orm import Session

from fabguard.domain.errors import Conflict, FabGuardError, NotFound
from fabguard.domain.values import recorded_order_id
from fabguard.ledger.entry import canonical_json, format_time
from fabguard.pki import handoff
from fabguard.service.authority.authorities import USABLE, device_issuers, is_matter_pai
from fabguard.service.core.events import record_refusal
from fabguard.service.core.instance import Instance
from fabguard.service.ledger import merkle_log
from fabguard.service.ledger.reports import signed_head
from fabguard.store import identities as identity_rows
from fabguard.store.eventlog import append_event
from fabguard.store.models import CertificateAuthority, Order, Unit
from fabguard.store.quota_leases import QuotaLease

MANIFEST_COLUMNS = (
    "serial",
    "status",
    "order_id",
    "product_id",
    "site_id",
    "issuing_ca",
    "issued_at",
    "revoked_at",
    "cert_serial",
    "certificate_sha256",
    "public_key_sha256",
    "certificate_der_base64",
    "public_key_der_base64",
    "mac_addresses",  # space-separated, where the product has a MAC block (docs/identities.md)
)


@dataclass(frozen=True)
class Bundle:
    """The files of one hand-off (name → text), and the ledger event that recorded it."""

    files: dict[str, str]
    event_seq: int
    verification_serial: str

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "event_seq": self.event_seq, "verification_cert_serial": self.verification_serial}


def _issuing_row(s: Session, name: str) -> CertificateAuthority:
    row = s.get(CertificateAuthority, name)
    if row is None:
        raise NotFound(f"no CA {name!r}", code="ca_not_found")
    if row.role == "agent":
        raise Conflict(
            f"CA {name} is a site agent's (its key is at the site): hand off the issuing CA of its lease's order, "
            "whose hand-off carries this CA and its synced units",
            code="ca_not_issuing",
        )
    if row.role != "issuing":
        raise Conflict(
            f"CA {name} is the {row.role} CA; device clouds trust the issuing CA that signs the devices",
            code="ca_not_issuing",
        )
    if row.state == "revoked":
        raise Conflict(f"CA {name} is revoked: its devices must not be onboarded", code="ca_revoked")
    if row.state not in USABLE or not row.certificate_pem:
        raise Conflict(f"CA {name} is {row.state} and has no certificate yet", code="ca_not_active")
    return row


def _agent_cas(s: Session, ca: str, order_id: str | None) -> list[CertificateAuthority]:
    """The site agents' CAs (of ``device_issuers``) whose leases are of an order under ``ca`` (of that order,
    if given), unless revoked: their units are this CA's orders' devices too."""
    leased = select(QuotaLease.agent_ca).join(Order, Order.id == QuotaLease.order_id).where(Order.issuing_ca == ca)
    if order_id is not None:
        leased = leased.where(QuotaLease.order_id == order_id)
    names = set(s.execute(leased).scalars())
    return [r for r in device_issuers(s) if r.role == "agent" and r.name in names and r.state != "revoked"]


def _device_rows(s: Session, ca: str, order_id: str | None, agents: list[CertificateAuthority]) -> list[Unit]:
    q = select(Unit).where(Unit.issuing_ca.in_([ca, *(a.name for a in agents)]), Unit.revoked_at.is_(None))
    if order_id is not None:
        q = q.where(Unit.order_id == order_id)
    return list(s.execute(q.order_by(Unit.serial)).scalars())


def _agent_files(inst: Instance, agents: list[CertificateAuthority]) -> dict[str, str]:
    """Each agent CA's certificate and its chain to the root (``<name>.pem``, ``<name>-chain.pem``). An agent
    CA is certified by the root itself (``profiles.agent_issuing_ca``), and its key is not here: its chain is
    its certificate and the root's, not the registry's chain of a CA with a key."""
    root = inst.cas.certificate_pem("root")
    files: dict[str, str] = {}
    for a in agents:
        files[f"{a.name}.pem"] = str(a.certificate_pem)
        files[f"{a.name}-chain.pem"] = str(a.certificate_pem) + root
    return files


Build = Callable[[Session, x509.Certificate, list[CertificateAuthority]], dict[str, str]]


def _issue(
    inst: Instance, cloud: str, ca: str, code: str, actor: str, build: Build, order_id: str | None = None
) -> Bundle:
    """Check the CA, sign the verification certificate, let ``build`` add the cloud's files, record it, commit."""
    now = inst.clock()
    try:
        with inst.db.transaction() as s:
            _issuing_row(s, ca)
            if order_id is not None:
                order = s.get(Order, order_id)
                if order is None:
                    raise NotFound(f"no order {order_id!r}", code="order_not_found")
                if order.issuing_ca != ca:
                    raise Conflict(
                        f"order {order_id} is issued by CA {order.issuing_ca}, not {ca}", code="order_not_under_ca"
                    )
            issuer = inst.cas.issuer(ca, s)
            cert = handoff.verification_certificate(issuer, code, now)
            agents = _agent_cas(s, ca, order_id)
            files = {
                "ca.pem": handoff.pem(issuer.certificate),
                "chain.pem": "".join(inst.cas.chain_pem(ca, s)),
                "verification.pem": handoff.pem(cert),
                **_agent_files(inst, agents),
            }
            files.update(build(s, issuer.certificate, agents))
            serial = format(cert.serial_number, "x")
            seq = append_event(
                s,
                f"handoff.{cloud}",
                at=now,
                actor=actor,
                order_id=order_id,
                detail={
                    "ca": ca,
                    "code": code,
                    "verification_cert_serial": serial,
                    "verification_cert_sha256": hashlib.sha256(
                        cert.public_bytes(serialization.Encoding.DER)
                    ).hexdigest(),
                    "not_after": format_time(cert.not_valid_after_utc),
                    "agent_cas": [a.name for a in agents],
                    "files": sorted(files),
                },
            )
    except FabGuardError as exc:
        record_refused(inst, cloud, ca, exc, actor=actor, order_id=order_id)
        raise
    return Bundle(files, seq, serial)


def record_refused(
    inst: Instance, cloud: str, ca: str, error: FabGuardError, *, actor: str, order_id: str | None = None
) -> None:
    """Record a refused hand-off (``handoff.refused``): nothing was signed, this is all that stays."""
    detail: dict[str, object] = {"cloud": cloud, "ca": ca if len(ca) <= 63 else ca[:60] + "..."}
    record_refusal(inst, "handoff.refused", error, actor=actor, order_id=recorded_order_id(order_id), detail=detail)


T = TypeVar("T")


def checked(inst: Instance, cloud: str, ca: str, parse: Callable[[], T], *, actor: str) -> T:
    """A value the API or CLI parses for a hand-off (a cloud's code, a name): refused and recorded if it is bad."""
    try:
        return parse()
    except FabGuardError as exc:
        record_refused(inst, cloud, ca, exc, actor=actor)
        raise


def aws_bundle(
    inst: Instance,
    ca: str,
    code: handoff.RegistrationCode,
    *,
    role_arn: str | None,
    order_id: str | None = None,
    actor: str,
) -> Bundle:
    """What ``aws iot register-ca-certificate`` needs (CA, verification certificate, JITP registration config),
    with a bulk-registration manifest of the CA's devices (of one order, if given)."""
    role = checked(inst, "aws", ca, lambda: handoff.role_arn(role_arn), actor=actor) if role_arn is not None else None

    def build(s: Session, ca_cert: x509.Certificate, agents: list[CertificateAuthority]) -> dict[str, str]:
        template = handoff.jitp_template(matter=is_matter_pai(ca_cert))
        # Each device under the CA that signed it (AWS IoT registers a certificate under its signing CA).
        signer = {ca: handoff.pem(ca_cert), **{a.name: str(a.certificate_pem) for a in agents}}
        lines = [
            json.dumps(
                {
                    "ThingName": u.serial,
                    "SerialNumber": u.serial,
                    "CertificatePem": u.certificate_pem,
                    "CACertificatePem": signer[u.issuing_ca],
                },
                sort_keys=True,
            )
            for u in _device_rows(s, ca, order_id, agents)
        ]
        files = {
            "jitp-template.json": handoff.dumps(template),
            "bulk-template.json": handoff.dumps(handoff.bulk_template()),
            "bulk-registration.jsonl": "".join(line + "\n" for line in lines),
            "README.txt": handoff.aws_readme(role is not None, [a.name for a in agents]),
        }
        if role is not None:
            files["registration-config.json"] = handoff.dumps(handoff.registration_config(template, role))
        return files

    return _issue(inst, "aws", ca, code.value, actor, build, order_id)


def azure_bundle(
    inst: Instance,
    ca: str,
    code: handoff.VerificationCode,
    *,
    enrollment_group_id: str | None = None,
    certificate_name: str | None = None,
    actor: str,
) -> Bundle:
    """What DPS needs: the CA certificate to upload, the proof-of-possession certificate for the code it gave,
    and an X.509 enrolment group that refers to the verified CA certificate."""
    group = checked(
        inst, "azure", ca, lambda: handoff.dps_name(enrollment_group_id or ca, "enrolment group id"), actor=actor
    )
    cert_name = checked(
        inst, "azure", ca, lambda: handoff.dps_name(certificate_name or ca, "DPS certificate name"), actor=actor
    )

    def build(s: Session, ca_cert: x509.Certificate, agents: list[CertificateAuthority]) -> dict[str, str]:
        tags = {"ca": ca, "organization": inst.config.organization}
        files = {
            "enrollment-group.json": handoff.dumps(handoff.enrollment_group(group, cert_name, tags)),
            "README.txt": handoff.azure_readme(group, cert_name, [a.name for a in agents]),
        }
        for a in agents:  # a site agent's devices chain through its own CA: a group of its own
            agent_tags = {"ca": a.name, "organization": inst.config.organization}
            files[f"{a.name}-enrollment-group.json"] = handoff.dumps(
                handoff.enrollment_group(a.name, a.name, agent_tags)
            )
        return files

    return _issue(inst, "azure", ca, code.value, actor, build)


@dataclass(frozen=True)
class Manifest:
    body: dict[str, Any]  # the signed document
    signature: str  # base64 Ed25519 over canonical_json(body), by the ledger key
    event_seq: int

    def to_dict(self) -> dict[str, Any]:
        return {"manifest": self.body, "signature": self.signature, "signed_by": self.body["verifier_key"]}


def _device(u: Unit, order: Order, identity: dict[str, object] | None) -> dict[str, Any]:
    cert = x509.load_pem_x509_certificate(u.certificate_pem.encode())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {
        "serial": u.serial,
        "status": "revoked" if u.revoked_at else "active",
        "order_id": u.order_id,
        "product_id": u.product_id,
        "site_id": order.site_id,
        "issuing_ca": u.issuing_ca,
        "issued_at": format_time(u.issued_at),
        "revoked_at": format_time(u.revoked_at) if u.revoked_at else None,
        "revocation_reason": u.revocation_reason,
        "cert_serial": u.cert_serial,
        "certificate_sha256": u.cert_sha256,
        "public_key_sha256": hashlib.sha256(spki).hexdigest(),
        "certificate_pem": u.certificate_pem,
        "public_key_pem": cert.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
        # The identities allocated to the unit from its product's pools (None: the product has none).
        "identity": identity,
    }


def order_manifest(inst: Instance, order_id: str, *, actor: str) -> Manifest:
    """Every device of an order with its certificate, key and status, at a checkpoint signed now, signed, and
    recorded as a ``handoff.manifest`` event (writes: only a POST or the command line calls it)."""
    with inst.db.read() as s:
        order = s.get(Order, order_id)
        if order is None:
            raise NotFound(f"no order {order_id!r}", code="order_not_found")
        units = list(s.execute(select(Unit).where(Unit.order_id == order_id).order_by(Unit.serial)).scalars())
        given = {row.serial: row for row in identity_rows.identities_of_order(s, order_id)}
        devices = [_device(u, order, identity_rows.public_identity(given.get(u.serial))) for u in units]
    checkpoint = merkle_log.make_checkpoint(inst)
    body = {
        **signed_head(inst, "FabGuard device manifest", checkpoint),
        "order": {
            "id": order.id,
            "product_id": order.product_id,
            "site_id": order.site_id,
            "issuing_ca": order.issuing_ca,
        },
        "count": len(devices),
        "devices": devices,
    }
    message = canonical_json(body)
    signature = base64.b64encode(merkle_log.ledger_signing_key(inst).sign(message)).decode()
    with inst.db.transaction() as s:
        seq = append_event(
            s,
            "handoff.manifest",
            at=inst.clock(),
            actor=actor,
            order_id=order_id,
            detail={
                "devices": len(devices),
                "sha256": hashlib.sha256(message).hexdigest(),
                "tree_size": checkpoint.size,
            },
        )
    return Manifest(body, signature, seq)


def manifest_json(manifest: Manifest) -> str:
    return json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n"


def manifest_csv(manifest: Manifest) -> str:
    """One row per device; certificate and public key as one-line base64 DER (the PEM body)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(MANIFEST_COLUMNS)
    for d in manifest.body["devices"]:
        cert = x509.load_pem_x509_certificate(d["certificate_pem"].encode())
        row = dict(d)
        row["mac_addresses"] = " ".join(d["identity"]["mac_addresses"]) if d.get("identity") else None
        row["certificate_der_base64"] = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        row["public_key_der_base64"] = base64.b64encode(
            cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        ).decode()
        writer.writerow(["" if row[c] is None else row[c] for c in MANIFEST_COLUMNS])
    return out.getvalue()
