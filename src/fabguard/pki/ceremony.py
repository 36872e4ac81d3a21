"""Root key ceremonies for an offline root: what crosses the air gap, and the checks at each end.

A **request** bundle goes from the instance to the ceremony: the CSRs of CAs whose keys the instance
made (each with its profile and the subject it must get), the root's CRL as the instance wants it (the
CAs it revoked, the next CRL number) and the URLs the root's certificates name. A **signed** bundle comes
back: the root's certificate, one certificate per request and the root's CRL. Both are a directory of
small files with a ``manifest.json``; neither holds a private key. Signing (``sign_request``) checks each
CSR and issues it with its profile (a CA with pathLen 0, or a product's licence signer: an end entity
for licence signing only, the subject asked for); importing (``check_signed``)
checks that each certificate is for the key the instance holds, has that profile and chains to the
root, and that the CRL is the root's, newer than the one served, and lists every CA the instance revoked
(``pki.ceremony_checks``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from fabguard.domain.errors import InvalidRequest
from fabguard.pki import matter, profiles
from fabguard.pki.crl import REASONS, RevokedEntry, build_crl
from fabguard.pki.keys import SigningKey, spki_fingerprint
from fabguard.pki.licence import licence_signer_certificate, licence_signer_subject

REQUEST_FORMAT = "fabguard-ceremony-request/1"
SIGNED_FORMAT = "fabguard-ceremony-signed/1"
MANIFEST = "manifest.json"
# The profiles a ceremony signs with: both are CAs below the root that sign end entities only (pathLen 0).
# A Matter PAI (pathLen 0 too) is signed by a PAA, a root of its own kept in its own ceremony directory.
# A licence signer is no CA: the root certifies it for feature licences only (``pki.licence``), as an
# online root does; devices take its licences only if the root signed it directly.
PROFILES = {"issuing-ca": "issuing", "station-ca": "station", "matter-pai": "issuing", "licence-signer": "licence"}
LICENCE_SIGNER = "licence-signer"
ROOT_KINDS = ("root", "matter-paa")
MAX_FILE_BYTES = 1 << 20
MAX_FILES = 200


def invalid(message: str) -> InvalidRequest:
    return InvalidRequest(message, code="ceremony_bundle_invalid")


@dataclass(frozen=True, slots=True)
class SigningRequest:
    """One CA the ceremony is asked to certify: its name on the instance, profile, subject and CSR."""

    name: str
    profile: str
    organization: str
    common_name: str
    csr: x509.CertificateSigningRequest
    vid: int | None = None  # a Matter PAI's vendor and product IDs
    pid: int | None = None
    product_id: str | None = None  # a licence signer's product

    @property
    def fingerprint(self) -> str:
        return spki_fingerprint(self.csr.public_key())

    @property
    def subject(self) -> x509.Name:
        """The subject the certificate gets: ``O, CN`` for FabGuard's CAs, ``CN, VID, PID`` for a Matter PAI,
        ``O, OU, CN`` for a licence signer (``<product> licences``)."""
        if self.profile == LICENCE_SIGNER:
            if self.product_id is None:
                raise invalid(f"the licence signer {self.name} names no product")
            return licence_signer_subject(self.organization, self.product_id)
        if self.profile != "matter-pai":
            return ca_subject(self.organization, self.common_name)
        if self.vid is None:
            raise invalid(f"the Matter PAI {self.name} names no vendor ID")
        pid = matter.ProductId(self.pid) if self.pid is not None else None
        return matter.attestation_subject(self.common_name, matter.VendorId(self.vid), pid)


@dataclass(frozen=True, slots=True)
class CeremonyRequest:
    organization: str
    instance: str
    root_common_name: str
    crl_url: str
    ca_issuers_url: str | None
    next_crl_number: int
    revoked: tuple[RevokedEntry, ...]
    requests: tuple[SigningRequest, ...]
    root_kind: str = "root"  # or "matter-paa": which root the ceremony opens
    root_vid: int | None = None  # a PAA's vendor ID

    def to_files(self) -> dict[str, bytes]:
        files = {f"{r.name}.csr.pem": r.csr.public_bytes(serialization.Encoding.PEM) for r in self.requests}
        manifest = {
            "format": REQUEST_FORMAT,
            "organization": self.organization,
            "instance": self.instance,
            "root": {
                "common_name": self.root_common_name,
                "crl_url": self.crl_url,
                "ca_issuers_url": self.ca_issuers_url,
                "kind": self.root_kind,
                "vid": self.root_vid,
            },
            "crl": {
                "next_number": self.next_crl_number,
                "revoked": [
                    {"serial": format(e.serial_number, "x"), "revoked_at": e.revoked_at.isoformat(), "reason": e.reason}
                    for e in self.revoked
                ],
            },
            "requests": [
                {
                    "name": r.name,
                    "profile": r.profile,
                    "organization": r.organization,
                    "common_name": r.common_name,
                    "csr": f"{r.name}.csr.pem",
                    "spki_sha256": r.fingerprint,
                    "vid": r.vid,
                    "pid": r.pid,
                    "product_id": r.product_id,
                }
                for r in self.requests
            ],
        }
        files[MANIFEST] = json.dumps(manifest, indent=2).encode()
        return files


def ca_subject(organization: str, common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name),
        ]
    )


def ca_csr(key: SigningKey, organization: str, common_name: str) -> x509.CertificateSigningRequest:
    """The CSR of a CA key the instance made, for the ceremony to sign."""
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(ca_subject(organization, common_name))
        .sign(key, profiles.hash_for(key))
    )


def manifest_digest(files: Mapping[str, bytes]) -> str:
    """SHA-256 of a bundle's manifest (which names each file's key fingerprint): what the officers read out."""
    return hashlib.sha256(files.get(MANIFEST, b"")).hexdigest()


def _json(files: Mapping[str, bytes], expected_format: str) -> dict[str, Any]:
    try:
        manifest = json.loads(files[MANIFEST])
    except KeyError:
        raise invalid(f"the bundle has no {MANIFEST}") from None
    except ValueError:
        raise invalid(f"{MANIFEST} is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != expected_format:
        raise invalid(f"{MANIFEST} is not a {expected_format} manifest")
    return manifest


def _file(files: Mapping[str, bytes], name: object) -> bytes:
    if not isinstance(name, str) or name not in files:
        raise invalid(f"the bundle names a file it does not hold: {str(name)[:80]!r}")
    return files[name]


def _entry(item: Mapping[str, Any]) -> RevokedEntry:
    reason = str(item["reason"])
    if reason not in REASONS:
        raise invalid(f"unknown revocation reason {reason[:40]!r}")
    return RevokedEntry(int(str(item["serial"]), 16), datetime.fromisoformat(str(item["revoked_at"])), reason)


def _signing_request(files: Mapping[str, bytes], item: Mapping[str, Any]) -> SigningRequest:
    try:
        csr = x509.load_pem_x509_csr(_file(files, item["csr"]))
    except ValueError:
        raise invalid(f"{item['csr']} is not a PEM CSR") from None
    vid, pid = (None if item.get(k) is None else int(item[k]) for k in ("vid", "pid"))
    product = None if item.get("product_id") is None else str(item["product_id"])
    request = SigningRequest(
        str(item["name"]), str(item["profile"]), str(item["organization"]), str(item["common_name"]), csr, vid, pid,
        product,
    )  # fmt: skip
    if request.profile not in PROFILES:
        raise InvalidRequest(f"unknown profile {request.profile[:40]!r}", code="ceremony_profile_mismatch")
    if not isinstance(csr.public_key(), ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise invalid(f"the CSR of {request.name} is not for an EC or Ed25519 key, which FabGuard's CAs sign with")
    if not csr.is_signature_valid:
        raise invalid(f"the CSR of {request.name} is not signed by its own key")
    if csr.subject != request.subject:
        raise invalid(f"the CSR of {request.name} asks for another subject than its manifest says")
    if item.get("spki_sha256") != request.fingerprint:
        raise invalid(f"the CSR of {request.name} holds another key than its manifest names")
    return request


def read_request(files: Mapping[str, bytes]) -> CeremonyRequest:
    """A request bundle, each CSR checked: signed by its own key, for the subject and key the manifest names."""
    m = _json(files, REQUEST_FORMAT)
    try:
        requests = tuple(_signing_request(files, item) for item in m["requests"])
        root, crl = m["root"], m["crl"]
        request = CeremonyRequest(
            str(m["organization"]),
            str(m["instance"]),
            str(root["common_name"]),
            str(root["crl_url"]),
            None if root.get("ca_issuers_url") is None else str(root["ca_issuers_url"]),
            int(crl["next_number"]),
            tuple(_entry(e) for e in crl["revoked"]),
            requests,
            str(root.get("kind", "root")),
            None if root.get("vid") is None else int(root["vid"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise invalid(f"{MANIFEST} is incomplete or malformed ({type(exc).__name__}: {str(exc)[:80]})") from None
    if request.root_kind not in ROOT_KINDS:
        raise invalid(f"unknown kind of root {request.root_kind[:40]!r}")
    if any((r.profile == "matter-pai") != (request.root_kind == "matter-paa") for r in requests):
        raise InvalidRequest(
            "a Matter PAI is signed by a PAA, any other CA by the root", code="ceremony_profile_mismatch"
        )
    if len({r.name for r in requests}) != len(requests):
        raise invalid("the bundle asks twice for one CA")
    return request


@dataclass(frozen=True, slots=True)
class SignedBundle:
    request_digest: str
    root: x509.Certificate
    certificates: Mapping[str, x509.Certificate]
    profiles_of: Mapping[str, str]
    crl: x509.CertificateRevocationList

    def to_files(self) -> dict[str, bytes]:
        pem = serialization.Encoding.PEM
        files = {f"{name}.pem": cert.public_bytes(pem) for name, cert in self.certificates.items()}
        files["root.pem"] = self.root.public_bytes(pem)
        files["root.crl"] = self.crl.public_bytes(serialization.Encoding.DER)
        manifest = {
            "format": SIGNED_FORMAT,
            "request_sha256": self.request_digest,
            "root": "root.pem",
            "root_sha256": hashlib.sha256(self.root.public_bytes(serialization.Encoding.DER)).hexdigest(),
            "crl": "root.crl",
            "certificates": [
                {"name": name, "profile": self.profiles_of[name], "certificate": f"{name}.pem"}
                for name in self.certificates
            ],
        }
        files[MANIFEST] = json.dumps(manifest, indent=2).encode()
        return files


def read_signed(files: Mapping[str, bytes]) -> SignedBundle:
    m = _json(files, SIGNED_FORMAT)
    try:
        root = x509.load_pem_x509_certificate(_file(files, m["root"]))
        crl = x509.load_der_x509_crl(_file(files, m["crl"]))
        certificates = {
            str(c["name"]): x509.load_pem_x509_certificate(_file(files, c["certificate"])) for c in m["certificates"]
        }
        kinds = {str(c["name"]): str(c["profile"]) for c in m["certificates"]}
        return SignedBundle(str(m["request_sha256"]), root, certificates, kinds, crl)
    except (KeyError, TypeError, ValueError) as exc:
        raise invalid(f"the signed bundle is incomplete or malformed ({type(exc).__name__}: {str(exc)[:80]})") from None


def sign_request(
    root: profiles.Issuer,
    request: CeremonyRequest,
    *,
    request_digest: str,
    crl_number: int,
    now: datetime,
    crl_valid_for: timedelta,
    sign_csrs: bool = True,
) -> SignedBundle:
    """Certify the request's CSRs (unless only the CRL is asked for) and sign the root's CRL."""
    _check_root_fits(root.certificate, request)
    certificates: dict[str, x509.Certificate] = {}
    for r in request.requests if sign_csrs else ():
        certificates[r.name] = _issue(root, r, request, now)
    crl = build_crl(root, list(request.revoked), number=crl_number, now=now, valid_for=crl_valid_for)
    kinds = {r.name: r.profile for r in request.requests if r.name in certificates}
    return SignedBundle(request_digest, root.certificate, certificates, kinds, crl)


def _check_root_fits(root: x509.Certificate, request: CeremonyRequest) -> None:
    """The root opened is the kind the request asks for: FabGuard's root of its organisation, or its PAA."""
    vid = matter.subject_ids(root.subject)[0]
    if request.root_kind == "matter-paa":
        if vid is None or vid.value != request.root_vid:
            raise invalid("the request is for a Matter PAA of another vendor ID than this root's")
        return
    orgs = root.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
    if vid is not None or not orgs or orgs[0].value != request.organization:
        raise invalid("the request is for another organisation's root than this one")


def _issue(root: profiles.Issuer, r: SigningRequest, request: CeremonyRequest, now: datetime) -> x509.Certificate:
    key = r.csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise invalid(f"the CSR of {r.name} is not for an EC or Ed25519 key")
    if r.profile == "matter-pai":
        assert r.vid is not None  # r.subject checked it when the request was read
        pid = matter.ProductId(r.pid) if r.pid is not None else None
        return matter.pai_certificate(root, key, r.common_name, matter.VendorId(r.vid), pid, now)
    if r.profile == LICENCE_SIGNER:
        assert r.product_id is not None  # r.subject checked it when the request was read
        return licence_signer_certificate(root, key, r.organization, r.product_id, now)
    return profiles.intermediate_ca(
        root, key, r.organization, r.common_name, now, crl_url=request.crl_url, ca_issuers_url=request.ca_issuers_url
    )


def read_directory(directory: Path) -> dict[str, bytes]:
    """The regular files of a bundle directory (no subdirectories, no links followed), size-limited."""
    if not directory.is_dir():
        raise invalid(f"{directory} is not a directory")
    files: dict[str, bytes] = {}
    for path in sorted(directory.iterdir()):
        if path.is_symlink() or not path.is_file():
            continue
        if len(files) >= MAX_FILES or path.stat().st_size > MAX_FILE_BYTES:
            raise invalid(f"{directory} holds more or larger files than a bundle does")
        files[path.name] = path.read_bytes()
    return files


def write_directory(directory: Path, files: Mapping[str, bytes]) -> None:
    """Write a bundle into a new (or empty) directory."""
    if directory.exists() and any(directory.iterdir()):
        raise InvalidRequest(f"{directory} is not empty: give a new directory", code="ceremony_bundle_invalid")
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)


__all__ = [
    "LICENCE_SIGNER",
    "PROFILES",
    "CeremonyRequest",
    "SignedBundle",
    "SigningRequest",
    "ca_csr",
    "ca_subject",
    "manifest_digest",
    "read_directory",
    "read_request",
    "read_signed",
    "sign_request",
    "write_directory",
]
