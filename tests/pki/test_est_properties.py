"""EST wire formats: what the server sends decodes back; whatever a client sends is parsed or refused, never a crash."""

from __future__ import annotations

import base64
import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from pyasn1.codec.der import decoder

from fabguard.api.parsing import UnparsedUnit, est_unit_request
from fabguard.domain.errors import is_declared
from fabguard.pki import est
from tests.hypothesis_profiles import examples

PROPERTY = settings(max_examples=examples(100), derandomize=True)
KEY = ec.generate_private_key(ec.SECP256R1())


def _cert(n: int) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"est-prop-{n}")])
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(KEY.public_key())
        .serial_number(n + 1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(KEY, hashes.SHA256())
    )


CERTS = [_cert(n) for n in range(4)]


@PROPERTY
@given(st.lists(st.sampled_from(CERTS), min_size=1, max_size=4))
def test_certs_only_decodes_to_the_same_certificates(certs: list[x509.Certificate]) -> None:
    wire = est.certs_only(certs)
    assert set(wire) <= set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\n")
    decoded = pkcs7.load_der_pkcs7_certificates(base64.b64decode(wire))
    # certificates is a DER SET OF: the same certificates, in DER order
    assert sorted(c.public_bytes(serialization.Encoding.DER) for c in decoded) == sorted(
        c.public_bytes(serialization.Encoding.DER) for c in certs
    )


def test_csr_attributes_decode_to_the_three_oids_a_device_needs() -> None:
    decoded, rest = decoder.decode(base64.b64decode(est.csr_attributes()))
    assert rest == b"" and len(decoded) == 3


def _csr_b64(serial: str) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, serial)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(KEY, hashes.SHA256())
    return base64.b64encode(csr.public_bytes(serialization.Encoding.DER))


VALID_BODY = _csr_b64("SN-EST-1")


@PROPERTY
@given(st.lists(st.integers(1, 80), max_size=8), st.sampled_from([b"\n", b"\r\n", b" "]))
def test_a_base64_csr_wrapped_as_clients_wrap_it_is_read(cuts: list[int], newline: bytes) -> None:
    body, parts, at = VALID_BODY, [], 0
    for n in cuts:
        parts.append(body[at : at + n])
        at += n
    parts.append(body[at:])
    parsed = est_unit_request("po-1", newline.join(parts), max_csr_bytes=8192)
    assert not isinstance(parsed, UnparsedUnit), parsed.error
    assert str(parsed.serial) == "SN-EST-1"


@PROPERTY
@given(st.binary(max_size=600) | st.builds(lambda b: base64.b64encode(b), st.binary(max_size=400)))
def test_any_simpleenroll_body_is_a_request_or_a_declared_refusal(body: bytes) -> None:
    parsed = est_unit_request("po-1", body, max_csr_bytes=8192)
    if isinstance(parsed, UnparsedUnit):
        assert is_declared(parsed.error.code) and 400 <= parsed.error.status < 500


@PROPERTY
@given(st.integers(0, len(VALID_BODY) - 1), st.integers(0, 255))
def test_a_mutated_simpleenroll_body_is_a_request_or_a_declared_refusal(at: int, byte: int) -> None:
    body = VALID_BODY[:at] + bytes([byte]) + VALID_BODY[at + 1 :]
    parsed = est_unit_request("po-1", body, max_csr_bytes=8192)
    if isinstance(parsed, UnparsedUnit):
        assert is_declared(parsed.error.code) and 400 <= parsed.error.status < 500
