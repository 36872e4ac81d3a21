"""The CA acts under dual control: creating an issuing CA or a Matter PAI (its key is made when a second
person approves, never before), importing an offline root's certificate, rotating and revoking a CA.
Each is asked for with its parameters (``requests.request(inst, name, CaCreation(...), by=...)``), checked
then, and carried out in the approval's transaction (``service/approvals/``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from sqlalchemy.orm import Session

from fabguard.domain.errors import InvalidRequest
from fabguard.service.approvals.registry import Approved, register
from fabguard.service.authority import authorities, matter_authorities, revocation
from fabguard.service.core import client_trust
from fabguard.service.core.instance import Instance
from fabguard.store.models import CertificateAuthority

CA_CREATION = "ca.create"
MATTER_PAI_CREATION = "ca.create_matter_pai"
CA_IMPORT = "ca.import"
CA_ROTATION = "ca.rotate"
CA_REVOCATION = "ca.revoke"


@dataclass(frozen=True, slots=True)
class CaCreation:
    """A new issuing CA (named by the request's target), for a site and/or a product line, or for any."""

    site_id: str | None
    product_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {"site_id": self.site_id, "product_id": self.product_id}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CaCreation:
        return cls(data["site_id"], data["product_id"])


@dataclass(frozen=True, slots=True)
class MatterPaiCreation:
    """A new Matter PAI for ``product_id``, under the vendor ``vid`` (and the Matter product ``pid``, if one)."""

    product_id: str
    vid: int
    pid: int | None

    def to_json(self) -> dict[str, Any]:
        return {"product_id": self.product_id, "vid": self.vid, "pid": self.pid}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MatterPaiCreation:
        return cls(data["product_id"], data["vid"], data["pid"])


@dataclass(frozen=True, slots=True)
class CaImport:
    """The certificate an offline root signed, for a pending CA."""

    certificate: str

    @classmethod
    def from_pem(cls, data: bytes) -> CaImport:
        try:
            return cls(data.decode("ascii"))
        except UnicodeDecodeError:
            raise InvalidRequest("the file is not a PEM certificate", code="certificate_invalid") from None

    def to_json(self) -> dict[str, Any]:
        return {"certificate": self.certificate}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CaImport:
        return cls(str(data["certificate"]))


@dataclass(frozen=True, slots=True)
class CaRotation:
    """An issuing CA succeeded by a new one of the same scope, named ``new_name``."""

    new_name: str

    def to_json(self) -> dict[str, Any]:
        return {"new_name": self.new_name}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CaRotation:
        return cls(data["new_name"])


@dataclass(frozen=True, slots=True)
class CaRevocation:
    """A CA put on the root's CRL, for ``reason`` (an RFC 5280 reason code's name)."""

    reason: str
    note: str

    def to_json(self) -> dict[str, Any]:
        return {"reason": self.reason, "note": self.note}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CaRevocation:
        return cls(data["reason"], data["note"])


def _new_ca_is_possible(inst: Instance, s: Session, target: str, p: CaCreation) -> None:
    authorities.check_new_ca(s, target, site_id=p.site_id, product_id=p.product_id)
    inst.cas.issuer("root", s)  # the root must sign it: fail now, not once a second person approves


def _create_issuing_ca(inst: Instance, s: Session, a: Approved[CaCreation]) -> dict[str, object]:
    p = a.parameters
    return authorities.create_issuing_ca_in(
        s, inst, a.target, site_id=p.site_id, product_id=p.product_id, at=a.now, actor=a.actor, detail=a.detail
    ).to_dict()


def _new_pai_is_possible(inst: Instance, s: Session, target: str, p: MatterPaiCreation) -> None:
    del inst
    matter_authorities.check_matter_pai(s, target, product_id=p.product_id, vid=p.vid, pid=p.pid)


def _create_matter_pai(inst: Instance, s: Session, a: Approved[MatterPaiCreation]) -> dict[str, object]:
    p = a.parameters
    return matter_authorities.create_matter_pai_in(
        s, inst, a.target, product_id=p.product_id, vid=p.vid, pid=p.pid, at=a.now, actor=a.actor, detail=a.detail
    ).to_dict()


def _import_is_possible(inst: Instance, s: Session, target: str, p: CaImport) -> None:
    authorities.check_import(s, inst, target, p.certificate.encode())
    _imported_pai_agrees(s, target, p.certificate)


def _import_certificate(inst: Instance, s: Session, a: Approved[CaImport]) -> dict[str, object]:
    pem = a.parameters.certificate.encode()
    done = authorities.import_certificate_in(s, inst, a.target, pem, at=a.now, actor=a.actor, detail=a.detail)
    _imported_pai_agrees(s, a.target, a.parameters.certificate)  # refused: the approval's transaction rolls back
    return done.to_dict()


def _imported_pai_agrees(s: Session, target: str, pem: str) -> None:
    """A Matter PAI's certificate imported for a product's CA names the vendor (and product) of its pool."""
    matter_authorities.imported_pai_agrees(s, target, x509.load_pem_x509_certificate(pem.encode()))


def _rotation_is_possible(inst: Instance, s: Session, target: str, p: CaRotation) -> None:
    old = authorities.check_rotation(s, target, new_name=p.new_name)
    if matter_authorities.rotated_pai(old) is None:
        inst.cas.issuer("root", s)
    else:  # a Matter PAI's successor is signed by its PAA
        matter_authorities.check_pai_rotation(s, old, p.new_name)


def _rotate_ca(inst: Instance, s: Session, a: Approved[CaRotation]) -> dict[str, object]:
    new_name = a.parameters.new_name

    def successor(old: CertificateAuthority) -> authorities.CaView:
        return matter_authorities.successor_in(s, inst, old, new_name, at=a.now, actor=a.actor, detail=a.detail)

    return authorities.rotate_issuing_ca_in(
        s, a.target, new_name=new_name, at=a.now, actor=a.actor, detail=a.detail, successor=successor
    ).to_dict()


def _revocation_is_possible(inst: Instance, s: Session, target: str, p: CaRevocation) -> None:
    del inst
    authorities.check_revocation(s, target, reason_code=p.reason)


def _revoke_ca(inst: Instance, s: Session, a: Approved[CaRevocation]) -> dict[str, object]:
    del inst
    p = a.parameters
    return authorities.revoke_ca_in(
        s, a.target, reason_code=p.reason, note=p.note, at=a.now, actor=a.actor, detail=a.detail
    ).to_dict()


def _resign_root_crl(inst: Instance) -> None:
    if "root" in revocation.ca_names(inst):  # an offline root's CRL is signed at the next ceremony
        revocation.refresh_crl(inst, "root")


# A CA made or imported joins the CAs clients may present at the handshake, in every running server.
_trusted = client_trust.write_client_trust
register(
    CA_CREATION,
    CaCreation,
    summary="create an issuing CA",
    check=_new_ca_is_possible,
    apply=_create_issuing_ca,
    after=_trusted,
)
register(
    MATTER_PAI_CREATION,
    MatterPaiCreation,
    summary="create a Matter PAI",
    check=_new_pai_is_possible,
    apply=_create_matter_pai,
    after=_trusted,
)
register(
    CA_IMPORT,
    CaImport,
    summary="import a CA certificate",
    check=_import_is_possible,
    apply=_import_certificate,
    after=_trusted,
)
register(
    CA_ROTATION,
    CaRotation,
    summary="rotate an issuing CA",
    check=_rotation_is_possible,
    apply=_rotate_ca,
    after=_trusted,
)
register(
    CA_REVOCATION,
    CaRevocation,
    summary="revoke a CA",
    check=_revocation_is_possible,
    apply=_revoke_ca,
    after=_resign_root_crl,
)

__all__ = [
    "CA_CREATION",
    "CA_IMPORT",
    "CA_REVOCATION",
    "CA_ROTATION",
    "MATTER_PAI_CREATION",
    "CaCreation",
    "CaImport",
    "CaRevocation",
    "CaRotation",
    "MatterPaiCreation",
]
