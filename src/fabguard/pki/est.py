"""EST (RFC 7030, with RFC 8951's clarifications) wire formats: PKCS#7 certs-only and CSR attributes."""

from __future__ import annotations

import base64

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from pyasn1.codec.der import encoder
from pyasn1.type import univ

ID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
PRIME256V1 = "1.2.840.10045.3.1.7"
ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2"
SERIAL_NUMBER = "2.5.4.5"

CERTS_ONLY = "application/pkcs7-mime; smime-type=certs-only"
CSRATTRS = "application/csrattrs"


def certs_only(certificates: list[x509.Certificate]) -> bytes:
    """A degenerate PKCS#7 SignedData holding ``certificates``, base64 as EST sends it."""
    der = pkcs7.serialize_certificates(certificates, serialization.Encoding.DER)
    return base64.encodebytes(der)


def csr_attributes() -> bytes:
    """CsrAttrs telling a device what its CSR must carry: a P-256 key, ECDSA-SHA256, a serialNumber in the subject."""
    key_attr = univ.Sequence()
    key_attr.setComponentByPosition(0, univ.ObjectIdentifier(ID_EC_PUBLIC_KEY))
    curves = univ.SetOf(componentType=univ.ObjectIdentifier())
    curves.setComponentByPosition(0, univ.ObjectIdentifier(PRIME256V1))
    key_attr.setComponentByPosition(1, curves)
    items = univ.SequenceOf(componentType=univ.Any())
    for i, part in enumerate(
        (
            encoder.encode(key_attr),
            encoder.encode(univ.ObjectIdentifier(ECDSA_WITH_SHA256)),
            encoder.encode(univ.ObjectIdentifier(SERIAL_NUMBER)),
        )
    ):
        items.setComponentByPosition(i, univ.Any(part))
    return base64.encodebytes(encoder.encode(items))
