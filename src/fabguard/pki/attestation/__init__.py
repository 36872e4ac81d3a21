"""Key attestation: evidence that a unit's key lives in a TPM or a secure element.

``parse_evidence`` reads the request's ``attestation`` object; ``verify`` checks it against one CSR and a
product's trusted roots and returns what to record. A refusal is ``attestation_invalid`` (the evidence is
malformed, does not verify, or is about another key or request) or ``attestation_untrusted`` (it verifies,
but its chain does not vouch for the key: it ends at no root the product trusts, or a certificate in it is
unfit for its place, such as a TPM "AK" certificate without the TCG AK purpose). Pure: values in, values out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fabguard.domain.errors import Refusal
from fabguard.pki.attestation.chain import ak_certificate, certificate_sha256, load_chain, trusted_root
from fabguard.pki.attestation.se import SeEvidence, verify_device_key
from fabguard.pki.attestation.tpm import MAX_BLOB, TpmEvidence, verify_certify

__all__ = [
    "FORMATS",
    "KINDS",
    "Attested",
    "Evidence",
    "SeEvidence",
    "TpmEvidence",
    "kind_of",
    "parse_evidence",
    "verify",
]

TPM_FORMAT, SE_FORMAT = "tpm2-certify", "se-chain"
FORMATS = (TPM_FORMAT, SE_FORMAT)
KINDS = ("tpm", "se")  # the kind of trusted root each format is checked against
Evidence = TpmEvidence | SeEvidence


@dataclass(frozen=True, slots=True)
class Attested:
    """What backed an issued certificate, as recorded with the unit and in its event."""

    format: str
    evidence_sha256: str
    leaf_sha256: str
    root_sha256: str
    root_subject: str
    key_name: str | None

    def to_dict(self) -> dict[str, str]:
        out = {
            "format": self.format,
            "evidence_sha256": self.evidence_sha256,
            "leaf_sha256": self.leaf_sha256,
            "root_sha256": self.root_sha256,
            "root_subject": self.root_subject,
        }
        if self.key_name is not None:
            out["key_name"] = self.key_name
        return out


def _blob(fields: Mapping[str, object], name: str) -> bytes:
    value = fields.get(name)
    if not isinstance(value, str) or len(value) > MAX_BLOB * 2:
        raise Refusal("attestation_invalid", f"attestation.{name} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Refusal("attestation_invalid", f"attestation.{name} is not valid base64") from None


def parse_evidence(value: object) -> Evidence:
    """The request's ``attestation``: ``{"format": "tpm2-certify", "attest", "signature", "public",
    "ak_chain"}`` (base64 TPM structures, PEM certificates) or ``{"format": "se-chain", "chain"}``."""
    if not isinstance(value, dict):
        raise Refusal("attestation_invalid", "attestation must be an object with a format")
    kind = value.get("format")
    if kind == TPM_FORMAT:
        extra = set(value) - {"format", "attest", "signature", "public", "ak_chain"}
        if extra:
            raise Refusal("attestation_invalid", f"attestation has unknown fields: {', '.join(sorted(extra))}")
        return TpmEvidence(
            _blob(value, "attest"),
            _blob(value, "signature"),
            _blob(value, "public"),
            load_chain(value.get("ak_chain"), "attestation.ak_chain"),
        )
    if kind == SE_FORMAT:
        if set(value) - {"format", "chain"}:
            raise Refusal("attestation_invalid", "an se-chain attestation has only format and chain")
        return SeEvidence(load_chain(value.get("chain"), "attestation.chain"))
    raise Refusal("attestation_invalid", f"attestation.format must be one of {', '.join(FORMATS)}")


def kind_of(evidence: Evidence) -> str:
    return "tpm" if isinstance(evidence, TpmEvidence) else "se"


def verify(
    evidence: Evidence,
    csr: x509.CertificateSigningRequest,
    roots: Sequence[x509.Certificate],
    now: datetime,
) -> Attested:
    """Check the evidence for this CSR against the product's roots of the evidence's kind."""
    csr_key = csr.public_key()
    if isinstance(evidence, TpmEvidence):
        digest = hashlib.sha256(csr.public_bytes(serialization.Encoding.DER)).digest()
        public = verify_certify(evidence, digest, csr_key)
        ak_certificate(evidence.ak_chain[0])
        root = trusted_root(evidence.ak_chain, roots, now, "the AK certificate chain")
        leaf, key_name, fmt = evidence.ak_chain[0], public.name.hex(), TPM_FORMAT
    else:
        verify_device_key(evidence, csr_key)
        root = trusted_root(evidence.chain, roots, now, "the secure element's chain")
        leaf, key_name, fmt = evidence.chain[0], None, SE_FORMAT
    return Attested(
        format=fmt,
        evidence_sha256=evidence.sha256,
        leaf_sha256=certificate_sha256(leaf),
        root_sha256=certificate_sha256(root),
        root_subject=root.subject.rfc4514_string(),
        key_name=key_name,
    )
