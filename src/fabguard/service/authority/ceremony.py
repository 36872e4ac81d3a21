"""The instance's side of an offline root's ceremonies (docs/ceremony.md).

``request_bundle`` writes what the ceremony is asked for: the CSRs of every CA waiting for its certificate
(after ``init --offline-root``: the issuing and station CAs; after ``add_issuer``: a new issuing CA) and
the root's CRL as this instance wants it (the CAs and licence signers it revoked, the next CRL number);
``add_licence_signer`` asks for a product's next licence signer (``ceremony_licences``). ``import_bundle``
checks the ceremony's answer (``pki.ceremony.check_signed``) and installs it in one transaction: the root's
certificate (its key ``external:``, never here), the CAs' certificates, the licence signers' certificates,
and the root's CRL, which ``/crl`` then serves as imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.orm import Session

from fabguard.domain.errors import Conflict, NotFound
from fabguard.domain.values import CaName, ProductId
from fabguard.pki import ceremony, ceremony_checks, matter, profiles
from fabguard.pki.crl import RevokedEntry
from fabguard.service.authority import authorities, ceremony_licences, matter_authorities
from fabguard.service.core.ca_registry import EXTERNAL_KEY, OFFLINE_ROOT_KEY
from fabguard.service.core.instance import Instance
from fabguard.service.core.seeding import ca_common_name, write_ca_files
from fabguard.store.crls import lock_crl
from fabguard.store.eventlog import append_event
from fabguard.store.models import CertificateAuthority, CrlRow

FILES_OF = ("issuing", "station")  # the CAs whose certificates init writes to <home>/ca


def _csr(row: CertificateAuthority) -> x509.CertificateSigningRequest:
    return x509.load_pem_x509_csr(str(row.csr_pem).encode())


def _vendor(row: CertificateAuthority) -> matter.VendorId | None:
    """The vendor ID a pending CA's CSR asks for: a Matter PAI's, signed by that vendor's PAA; else None."""
    return matter.subject_ids(_csr(row).subject)[0]


def _profile(row: CertificateAuthority) -> str:
    if _vendor(row) is not None:
        return "matter-pai"
    return "station-ca" if row.role == "station" else "issuing-ca"


def _target(root: str) -> matter.VendorId | None:
    """The vendor of the PAA ``root`` names (``matter-paa-<vid>``), or None for FabGuard's root."""
    if root == "root":
        return None
    try:
        if not root.startswith("matter-paa-"):
            raise ValueError(root)
        return matter.VendorId(int(root.removeprefix("matter-paa-"), 16))
    except ValueError:  # a VendorId out of range is a ValueError too
        raise NotFound(f"no root {root[:63]!r}: 'root' or 'matter-paa-<vid>'", code="ca_not_found") from None


def _offline_root(s: Session, name: str = "root") -> CertificateAuthority | None:
    """The registry row of the root ``name`` (FabGuard's root, or a Matter PAA; None before its first
    ceremony is imported), if its key is offline."""
    row = s.get(CertificateAuthority, name)
    if row is not None and not row.key_ref.startswith(EXTERNAL_KEY):
        raise Conflict(
            f"this instance's {name} key is on the server (made without a ceremony): it signs its CAs itself",
            code="root_not_offline",
        )
    return row


def _revoked_under(s: Session, root_subject: x509.Name | None) -> list[RevokedEntry]:
    """The revoked CAs and licence signers the root certified: its CRL must list them."""
    if root_subject is None:
        return []
    rows = s.execute(
        select(CertificateAuthority).where(
            CertificateAuthority.state == "revoked", CertificateAuthority.certificate_pem.is_not(None)
        )
    ).scalars()
    return [
        RevokedEntry(int(str(r.cert_serial), 16), r.revoked_at, r.revocation_reason or "unspecified")
        for r in rows
        if r.revoked_at is not None
        and x509.load_pem_x509_certificate(str(r.certificate_pem).encode()).issuer == root_subject
    ] + ceremony_licences.revoked_under(s, root_subject)


def _pending(s: Session) -> list[CertificateAuthority]:
    return list(
        s.execute(
            select(CertificateAuthority)
            .where(CertificateAuthority.state == "pending", CertificateAuthority.csr_pem.is_not(None))
            .order_by(CertificateAuthority.name)
        ).scalars()
    )


def _signing_request(row: CertificateAuthority, organization: str) -> ceremony.SigningRequest:
    csr, vendor = _csr(row), _vendor(row)
    cn = str(csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)
    if vendor is not None:
        product = matter.subject_ids(csr.subject)[1]
        pid = product.value if product is not None else None
        return ceremony.SigningRequest(row.name, "matter-pai", organization, cn, csr, vendor.value, pid)
    org = str(csr.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)[0].value)
    return ceremony.SigningRequest(row.name, _profile(row), org, cn, csr)


def request_bundle(inst: Instance, root: str = "root") -> dict[str, bytes]:
    """The files of a request bundle for the root ``root`` (FabGuard's, or a Matter PAA ``matter-paa-<vid>``):
    the CSR of every pending CA it is to sign, and its CRL as this instance wants it."""
    org, vendor = inst.config.organization, _target(root)
    with inst.db.read() as s:
        row = _offline_root(s, root)
        root_cert = x509.load_pem_x509_certificate(str(row.certificate_pem).encode()) if row else None
        crl_row = s.get(CrlRow, root)
        request = ceremony.CeremonyRequest(
            organization=org,
            instance=inst.config.key_prefix,
            root_common_name=ca_common_name(org, "root") if vendor is None else f"{org} Matter PAA {vendor}",
            crl_url=inst.cas.crl_url(root),
            ca_issuers_url=inst.cas.ca_issuers_url(root),
            next_crl_number=crl_row.number + 1 if crl_row else 1,
            revoked=tuple(_revoked_under(s, root_cert.subject if root_cert else None)),
            requests=tuple(_signing_request(r, org) for r in _pending(s) if _vendor(r) == vendor)
            + tuple(ceremony_licences.signing_requests(s, org) if vendor is None else ()),
            root_kind="root" if vendor is None else "matter-paa",
            root_vid=None if vendor is None else vendor.value,
        )
    return request.to_files()


def add_issuer(
    inst: Instance, name: CaName, *, site_id: str | None, product_id: str | None, actor: str
) -> dict[str, bytes]:
    """A new issuing CA for an offline root: its key made here, registered pending, its CSR in a request
    bundle (with any other pending CA and the root's CRL) for the next ceremony."""
    with inst.db.read() as s:
        _offline_root(s)
    authorities.issuing_csr(inst, name, site_id=site_id, product_id=product_id, actor=actor)
    return request_bundle(inst)


def add_matter_pai(
    inst: Instance, name: CaName, *, product_id: str, vid: int, pid: int | None, actor: str
) -> dict[str, bytes]:
    """A Matter PAI whose vendor's PAA is offline: its key made here, registered pending (scoped to the
    product, like ``ca create-matter-pai``'s), its CSR in a request bundle for the PAA's ceremony."""
    now = inst.clock()
    with inst.db.transaction() as s:
        vendor, product = matter_authorities.check_matter_pai(
            s, name.value, product_id=product_id, vid=vid, pid=pid, offline=True
        )
        paa = matter_authorities.paa_name(vendor)
        _offline_root(s, paa)
        key_ref = authorities.new_ca_key(inst, name.value)
        key = inst.keys.load(key_ref)
        subject = matter.attestation_subject(f"{inst.config.organization} Matter PAI {name.value}", vendor, product)
        csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, profiles.hash_for(key))
        authorities.register_ca(
            s, name.value, "pending", (None, product_id), key_ref, csr,
            at=now, actor=actor, kind="ca.csr_created", detail={"vid": str(vendor)},
        )  # fmt: skip
    return request_bundle(inst, paa)


def add_licence_signer(inst: Instance, product_id: ProductId, *, actor: str) -> dict[str, bytes]:
    """A product's next licence signer under the offline root: its key made here, pending (it signs nothing)
    until the ceremony's certificate is imported; a request bundle with its CSR (and anything else pending)."""
    with inst.db.read() as s:
        _offline_root(s)
    ceremony_licences.make_pending(inst, product_id, actor=actor)
    return request_bundle(inst)


@dataclass(frozen=True, slots=True)
class Imported:
    root_fingerprint: str
    cas: tuple[str, ...]
    crl_number: int
    crl_next_update: str
    licence_signers: tuple[str, ...] = ()  # "<product> <generation>" of each licence signer installed


def import_bundle(inst: Instance, files: dict[str, bytes], *, actor: str) -> Imported:
    """Check a signed bundle against this instance and install it (all of it, or nothing)."""
    bundle = ceremony.read_signed(files)
    now = inst.clock()
    vendor = matter.subject_ids(bundle.root.subject)[0]
    target = "root" if vendor is None else matter_authorities.paa_name(vendor)
    with inst.db.transaction() as s:
        root_row = _offline_root(s, target)
        known = x509.load_pem_x509_certificate(str(root_row.certificate_pem).encode()) if root_row else None
        rows = {r.name: r for r in _pending(s) if r.name in bundle.certificates}
        expected = {
            name: ceremony_checks.Expected(
                inst.keys.load(r.key_ref).public_key(),
                _csr(r).subject,
                _profile(r),
            )
            for name, r in rows.items()
        }
        # Licence signers are FabGuard's root's to certify, never a PAA's.
        signers = ceremony_licences.expected(inst, s, bundle.certificates) if target == "root" else {}
        expected.update({name: want for name, (_, want) in signers.items()})
        crl_row = lock_crl(s, target)
        ceremony_checks.check_signed(
            bundle,
            expected,
            known_root=known,
            current_crl_number=crl_row.number if crl_row else None,
            revoked_serials=[e.serial_number for e in _revoked_under(s, bundle.root.subject)],
            now=now,
        )
        if root_row is None:
            _register_root(s, target, bundle.root, now=now, actor=actor)
        for name, cert in bundle.certificates.items():
            if name in signers:
                ceremony_licences.install(s, signers[name][0], cert, now=now, actor=actor)
            else:
                matter_authorities.imported_pai_agrees(s, name, cert)  # a PAI names its product's pool's IDs
                _activate(s, rows[name], cert, now=now, actor=actor)
        number = _install_crl(s, target, crl_row, bundle.crl, now=now, actor=actor)
        installed = tuple(f"{row.product_id} {row.generation}" for row, _ in signers.values())
    _write_files(inst, bundle, first=root_row is None and target == "root")
    return Imported(
        bundle.root.fingerprint(hashes.SHA256()).hex(),
        tuple(name for name in bundle.certificates if name not in signers),
        number,
        bundle.crl.next_update_utc.isoformat() if bundle.crl.next_update_utc else "",
        installed,
    )


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _register_root(s: Session, name: str, root: x509.Certificate, *, now: datetime, actor: str) -> None:
    s.add(
        CertificateAuthority(
            name=name,
            role="root" if name == "root" else "paa",
            state="active",
            key_ref=OFFLINE_ROOT_KEY,
            certificate_pem=_pem(root),
            cert_serial=format(root.serial_number, "x"),
            created_at=now,
        )
    )
    detail = {"ca": name, "cert_serial": format(root.serial_number, "x"), "key": "offline"}
    append_event(s, "ca.imported", at=now, actor=actor, detail=detail)


def _activate(s: Session, row: CertificateAuthority, cert: x509.Certificate, *, now: datetime, actor: str) -> None:
    row.certificate_pem, row.cert_serial = _pem(cert), format(cert.serial_number, "x")
    row.state, row.csr_pem = "active", None
    detail = {"ca": row.name, "cert_serial": row.cert_serial, "ceremony": True}
    append_event(s, "ca.imported", at=now, actor=actor, detail=detail)


def _install_crl(
    s: Session, ca: str, row: CrlRow | None, crl: x509.CertificateRevocationList, *, now: datetime, actor: str
) -> int:
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    der = crl.public_bytes(serialization.Encoding.DER)
    this_update, next_update = crl.last_update_utc, crl.next_update_utc
    assert next_update is not None  # build_crl always sets it; a CRL without one is refused by check_root_crl
    if row is None:
        s.add(CrlRow(ca=ca, number=number, der=der, this_update=this_update, next_update=next_update))
    else:
        row.number, row.der, row.this_update, row.next_update = number, der, this_update, next_update
    detail = {"ca": ca, "crl_number": number, "next_update": next_update.isoformat(), "revoked": len(crl)}
    append_event(s, "crl.imported", at=now, actor=actor, detail=detail)
    return int(number)


def _write_files(inst: Instance, bundle: ceremony.SignedBundle, *, first: bool) -> None:
    """The certificate files ``init`` writes for an online root, once their CAs are active: ``ca/root.pem``,
    ``issuing.pem``, ``station.pem`` and, signed now by the station CA, the TLS server's certificate."""
    certs = {name: c for name, c in bundle.certificates.items() if name in FILES_OF}
    if first:
        certs["root"] = bundle.root
    station = inst.cas.issuer("station") if "station" in certs else None
    server_key = inst.keys.load("file:server")
    assert isinstance(server_key, ec.EllipticCurvePrivateKey)
    write_ca_files(inst.home, inst.config, certs, station, server_key, inst.clock())


__all__ = ["Imported", "add_issuer", "add_licence_signer", "add_matter_pai", "import_bundle", "request_bundle"]
