"""Hostile CSRs: any bytes, and mutations of a valid CSR, end in a CSR or a declared refusal, never a crash."""

from __future__ import annotations

import base64

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fabguard.domain.errors import REFUSAL_STATUS, Refusal
from fabguard.pki.csr import check_device_csr, load_csr
from tests.hypothesis_profiles import examples

MAX = 8 * 1024
# What the checks may answer: load_csr only that the CSR is unreadable; the checks also a key or serial problem.
LOAD_CODES = {"csr_invalid"}
CHECK_CODES = {"csr_invalid", "key_type_not_allowed", "serial_mismatch"}
PROPERTY = settings(max_examples=examples(150), derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def _valid_der() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "SN-PROP-1")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.DER)


VALID_DER = _valid_der()


def _wire_forms(der: bytes) -> list[bytes]:
    pem = b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(der) + b"-----END CERTIFICATE REQUEST-----\n"
    return [der, pem, base64.encodebytes(der)]


def _load_and_check(data: bytes) -> None:
    try:
        csr = load_csr(data, MAX)
    except Refusal as refusal:
        assert refusal.code in LOAD_CODES, refusal.code
        return
    try:
        check_device_csr(csr)
    except Refusal as refusal:
        assert refusal.code in CHECK_CODES, refusal.code


def test_the_codes_the_checks_answer_with_are_declared_refusals() -> None:
    assert set(REFUSAL_STATUS) >= (LOAD_CODES | CHECK_CODES)


@PROPERTY
@given(st.binary(max_size=2 * MAX))
def test_arbitrary_bytes_are_a_csr_or_a_csr_invalid_refusal(data: bytes) -> None:
    _load_and_check(data)


@PROPERTY
@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\n -", max_size=600))
def test_arbitrary_base64_and_pem_like_text_is_a_csr_or_a_refusal(text: str) -> None:
    _load_and_check(text.encode())
    _load_and_check(b"-----BEGIN CERTIFICATE REQUEST-----\n" + text.encode() + b"\n-----END CERTIFICATE REQUEST-----")


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid CSR with bytes flipped, cut, inserted or removed."""
    der = bytearray(VALID_DER)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        at = draw(st.integers(0, max(len(der) - 1, 0)))
        if kind == "flip" and der:
            der[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and der:
            der[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del der[at:]
        elif kind == "insert":
            der[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del der[at : at + draw(st.integers(1, 8))]
    return bytes(der)


@PROPERTY
@given(mutated(), st.integers(0, 2))
def test_a_mutated_valid_csr_in_every_wire_form_is_a_csr_or_a_declared_refusal(der: bytes, form: int) -> None:
    _load_and_check(_wire_forms(der)[form])


@pytest.mark.parametrize("form", [0, 1, 2])
def test_the_unmutated_csr_passes_in_every_wire_form(form: int) -> None:
    facts = check_device_csr(load_csr(_wire_forms(VALID_DER)[form], MAX)).facts
    assert facts.subject_serial == "SN-PROP-1"


@PROPERTY
@given(st.integers(1, 200))
def test_an_oversize_csr_is_refused_before_parsing(extra: int) -> None:
    with pytest.raises(Refusal) as refused:
        load_csr(VALID_DER + b"\x00" * (MAX - len(VALID_DER) + extra), MAX)
    assert refused.value.code == "csr_invalid" and "at most" in refused.value.message
