"""Hostile attestation bytes: anything ends in a declared refusal, never a crash; and no one-byte change of a
good TPM2_Certify (attest, signature or public area) is accepted.

The structures are built here with ``struct`` as TPM 2.0 Part 2 lays them out (the swtpm tests check the
same parser against a real TPM), signed by a software AK, so these run without swtpm.
"""

from __future__ import annotations

import hashlib
import struct
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fabguard.domain.errors import Refusal
from fabguard.pki import attestation
from fabguard.pki.attestation import tpm
from tests.hypothesis_profiles import examples
from tests.tpm_support import TestCa, csr_for, csr_sha256

PROPERTY = settings(max_examples=examples(150), derandomize=True, suppress_health_check=[HealthCheck.too_slow])
CODES = {"attestation_invalid", "attestation_untrusted"}
NOW = datetime.now(UTC)


def tpm2b(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def public_area(key: ec.EllipticCurvePublicKey, attributes: int = tpm.REQUIRED_ATTRIBUTES) -> bytes:
    numbers = key.public_numbers()
    point = tpm2b(numbers.x.to_bytes(32, "big")) + tpm2b(numbers.y.to_bytes(32, "big"))
    # ECC, nameAlg SHA-256, attributes, no authPolicy, symmetric NULL, scheme ECDSA-SHA256, P-256, kdf NULL.
    raw = (
        struct.pack(">HHI", 0x0023, 0x000B, attributes)
        + tpm2b(b"")
        + struct.pack(">HHHHH", 0x0010, 0x0018, 0x000B, 0x0003, 0x0010)
    )
    return tpm2b(raw + point)


def certify_info(name: bytes, extra: bytes) -> bytes:
    header = struct.pack(">IH", tpm.TPM_GENERATED_VALUE, tpm.TPM_ST_ATTEST_CERTIFY)
    clock = struct.pack(">QIIB", 1234, 1, 0, 1) + struct.pack(">Q", 0x2019102300163636)
    return header + tpm2b(b"\x00\x0b" + bytes(32)) + tpm2b(extra) + clock + tpm2b(name) + tpm2b(name)


def ecdsa_signature(ak: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    r, s = utils.decode_dss_signature(ak.sign(message, ec.ECDSA(hashes.SHA256())))
    return struct.pack(">HH", tpm.TPM_ALG_ECDSA, 0x000B) + tpm2b(r.to_bytes(32, "big")) + tpm2b(s.to_bytes(32, "big"))


class Good:
    """One good software-made certify and everything needed to check it."""

    def __init__(self) -> None:
        self.maker = TestCa.make("Test TPM maker AK CA")
        self.ak = ec.generate_private_key(ec.SECP256R1())
        self.ak_cert = self.maker.issue_ak("AK", self.ak.public_key())
        device = ec.generate_private_key(ec.SECP256R1())
        self.csr = csr_for("SN-PROP-1", device)
        self.public = public_area(device.public_key())
        name = tpm.parse_public(self.public).name
        self.attest = certify_info(name, csr_sha256(self.csr))
        self.signature = ecdsa_signature(self.ak, self.attest)

    def check(self, attest: bytes, signature: bytes, public: bytes) -> attestation.Attested:
        evidence = tpm.TpmEvidence(attest, signature, public, (self.ak_cert,))
        return attestation.verify(evidence, self.csr, [self.maker.cert], NOW)


GOOD = Good()


def test_the_software_made_certify_verifies_and_names_the_key() -> None:
    done = GOOD.check(GOOD.attest, GOOD.signature, GOOD.public)
    assert done.key_name == "000b" + hashlib.sha256(GOOD.public[2:]).hexdigest()


def test_a_key_without_fixed_tpm_is_refused_even_when_all_else_holds() -> None:
    device = ec.generate_private_key(ec.SECP256R1())
    csr = csr_for("SN-PROP-2", device)
    public = public_area(device.public_key(), tpm.REQUIRED_ATTRIBUTES & ~tpm.FIXED_TPM)
    attest = certify_info(tpm.parse_public(public).name, csr_sha256(csr))
    evidence = tpm.TpmEvidence(attest, ecdsa_signature(GOOD.ak, attest), public, (GOOD.ak_cert,))
    with pytest.raises(Refusal, match="fixedTPM"):
        attestation.verify(evidence, csr, [GOOD.maker.cert], NOW)


@PROPERTY
@given(st.binary(max_size=400))
def test_any_bytes_are_parsed_or_refused_as_attestation_invalid(data: bytes) -> None:
    for parse in (tpm.parse_certify_info, tpm.parse_public):
        try:
            parse(data)
        except Refusal as refusal:
            assert refusal.code == "attestation_invalid"
    with pytest.raises(Refusal) as info:
        tpm.verify_signature(data, GOOD.attest, GOOD.ak_cert)
    assert info.value.code == "attestation_invalid"


@PROPERTY
@given(st.sampled_from(["attest", "signature", "public"]), st.data())
def test_no_one_byte_change_of_a_good_certify_is_accepted(part: str, data: st.DataObject) -> None:
    parts = {"attest": GOOD.attest, "signature": GOOD.signature, "public": GOOD.public}
    blob = bytearray(parts[part])
    at = data.draw(st.integers(0, len(blob) - 1))
    blob[at] ^= data.draw(st.integers(1, 255))
    parts[part] = bytes(blob)
    with pytest.raises(Refusal) as info:
        GOOD.check(parts["attest"], parts["signature"], parts["public"])
    assert info.value.code in CODES


@PROPERTY
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
        max_leaves=12,
    )
)
def test_any_json_attestation_is_parsed_or_refused_as_attestation_invalid(value: object) -> None:
    try:
        attestation.parse_evidence(value)
    except Refusal as refusal:
        assert refusal.code == "attestation_invalid"
