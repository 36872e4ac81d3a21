"""TPM 2.0 key attestation checked against a real software TPM (swtpm): a TPM2_Certify of a key made in
the TPM, by an AK whose certificate a TPM maker CA made for the test issued.

The verifier is pure (``pki.attestation``); the TPM makes every structure it reads.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from fabguard.domain.errors import Refusal
from fabguard.pki import attestation
from fabguard.pki.attestation import tpm as tpm_format
from tests.tpm_support import (
    CA_USAGE,
    KEY_HANDLE,
    TCG_AK_EKU,
    SoftwareTpm,
    TestCa,
    TpmSigningKey,
    TpmUnit,
    csr_for,
    csr_sha256,
    running_tpm,
    tpm_attestation,
    tpm_unit,
)

NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def tpm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftwareTpm]:
    with running_tpm(tmp_path_factory.mktemp("swtpm")) as software_tpm:
        yield software_tpm


@pytest.fixture(scope="module")
def maker() -> TestCa:
    return TestCa.make("Test TPM maker AK CA")


@pytest.fixture(scope="module")
def unit(tpm: SoftwareTpm) -> TpmUnit:
    return tpm_unit(tpm, "SN-TPM-1")


def verified(
    evidence: dict[str, object], csr: object, roots: list[object], now: datetime = NOW
) -> attestation.Attested:
    return attestation.verify(attestation.parse_evidence(evidence), csr, roots, now)  # type: ignore[arg-type]


def refusal(evidence: dict[str, object], csr: object, roots: list[object], now: datetime = NOW) -> tuple[str, str]:
    with pytest.raises(Refusal) as info:
        verified(evidence, csr, roots, now)
    return info.value.code, info.value.message


def test_a_certify_of_the_csr_key_by_a_trusted_ak_verifies(tpm: SoftwareTpm, maker: TestCa, unit: TpmUnit) -> None:
    ak = maker.issue_ak("AK", tpm.ak_public())
    done = verified(unit.attestation([ak]), unit.csr, [maker.cert])
    assert done.format == "tpm2-certify"
    assert done.root_subject == "CN=Test TPM maker AK CA"
    assert done.key_name == tpm_format.parse_public(unit.key.public_area).name.hex()
    assert done.key_name.startswith("000b")  # nameAlg SHA-256, then the digest of the TPMT_PUBLIC


def test_an_ak_certificate_under_an_intermediate_of_the_maker_verifies(
    tpm: SoftwareTpm, maker: TestCa, unit: TpmUnit
) -> None:
    intermediate = TestCa.make("Test TPM maker issuing CA", issuer=maker)
    ak = intermediate.issue_ak("AK", tpm.ak_public())
    assert verified(unit.attestation([ak, intermediate.cert]), unit.csr, [maker.cert]).root_sha256


def test_a_software_key_csr_with_the_attestation_of_a_tpm_key_is_invalid(
    tpm: SoftwareTpm, maker: TestCa, unit: TpmUnit
) -> None:
    software_csr = csr_for("SN-TPM-1", ec.generate_private_key(ec.SECP256R1()))
    # Bound to the software CSR too, so only the key can tell: the TPM certified its own key, not this one.
    attest, signature = _certify_bound_to(tpm, unit, csr_sha256(software_csr))
    evidence = tpm_attestation(attest, signature, unit.key.public_area, [maker.issue_ak("AK", tpm.ak_public())])
    code, message = refusal(evidence, software_csr, [maker.cert])
    assert (code, message) == ("attestation_invalid", "the CSR's key is not the key the TPM certified")


def test_a_certify_over_another_key_is_invalid(tpm: SoftwareTpm, maker: TestCa, unit: TpmUnit) -> None:
    other = tpm_unit(tpm, "SN-TPM-1", bind_to=unit.csr)  # another TPM key's certify, bound to this CSR
    evidence = tpm_attestation(
        other.attest, other.signature, unit.key.public_area, [maker.issue_ak("AK", tpm.ak_public())]
    )
    code, message = refusal(evidence, unit.csr, [maker.cert])
    assert code == "attestation_invalid" and "certifies another key" in message


def test_a_replayed_attestation_for_another_csr_of_the_same_key_is_invalid(
    tpm: SoftwareTpm, maker: TestCa, unit: TpmUnit
) -> None:
    # The same TPM key asks for a second serial with the attestation made for its first CSR.
    tpm.persist(unit.key, KEY_HANDLE)
    try:
        second = csr_for("SN-TPM-2", TpmSigningKey(tpm, KEY_HANDLE, unit.key.public_key))
    finally:
        tpm.unpersist(KEY_HANDLE)
    code, message = refusal(unit.attestation([maker.issue_ak("AK", tpm.ak_public())]), second, [maker.cert])
    assert code == "attestation_invalid" and "replayed" in message


def test_an_ak_chain_to_an_unknown_maker_is_untrusted(tpm: SoftwareTpm, maker: TestCa, unit: TpmUnit) -> None:
    stranger = TestCa.make("Somebody's AK CA")
    code, _ = refusal(unit.attestation([stranger.issue_ak("AK", tpm.ak_public())]), unit.csr, [maker.cert])
    assert code == "attestation_untrusted"


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda m, k: m.issue("IDevID", k), id="idevid-without-eku"),
        pytest.param(lambda m, k: m.issue("IDevID", k, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,)), id="idevid-client"),
        pytest.param(lambda m, k: m.issue("AK", k, eku=(TCG_AK_EKU,), ca=True, usage=CA_USAGE), id="ca-as-ak"),
        pytest.param(lambda m, k: m.issue("AK", k, eku=(TCG_AK_EKU,), usage=CA_USAGE), id="no-digital-signature"),
    ],
)
def test_a_certificate_of_the_tpm_maker_that_is_not_an_ak_certificate_is_untrusted(
    tpm: SoftwareTpm, maker: TestCa, unit: TpmUnit, make: object
) -> None:
    # The TPM's own key signs a real TPMS_ATTEST: the signature verifies, as it would for the holder of a
    # genuine device's IDevID key forging one; only the certificate's purpose tells it is no AK.
    cert: x509.Certificate = make(maker, tpm.ak_public())  # type: ignore[operator]
    code, message = refusal(unit.attestation([cert]), unit.csr, [maker.cert])
    assert code == "attestation_untrusted" and "AK certificate" in message


def test_an_ak_certificate_past_its_validity_is_untrusted(tpm: SoftwareTpm, maker: TestCa, unit: TpmUnit) -> None:
    evidence = unit.attestation([maker.issue_ak("AK", tpm.ak_public())])
    code, message = refusal(evidence, unit.csr, [maker.cert], NOW + timedelta(days=4000))
    assert code == "attestation_untrusted" and "validity" in message


def test_an_ak_certificate_for_another_key_fails_the_signature(unit: TpmUnit, maker: TestCa) -> None:
    wrong_ak = maker.issue_ak("AK", ec.generate_private_key(ec.SECP256R1()).public_key())
    code, message = refusal(unit.attestation([wrong_ak]), unit.csr, [maker.cert])
    assert (code, message) == ("attestation_invalid", "the AK's signature over the attestation does not verify")


def test_a_key_imported_into_the_tpm_is_invalid(tpm: SoftwareTpm, maker: TestCa) -> None:
    software_key = ec.generate_private_key(ec.SECP256R1())
    imported = tpm.imported(software_key)
    csr = csr_for("SN-TPM-9", software_key)
    tpm.persist(imported, KEY_HANDLE)
    try:
        attest, signature = tpm.certify(KEY_HANDLE, csr_sha256(csr))
    finally:
        tpm.unpersist(KEY_HANDLE)
    evidence = tpm_attestation(attest, signature, imported.public_area, [maker.issue_ak("AK", tpm.ak_public())])
    code, message = refusal(evidence, csr, [maker.cert])
    assert code == "attestation_invalid" and "not generated in this TPM" in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda e: {**e, "format": "tpm3"}, "attestation.format"),
        (lambda e: {**e, "attest": "not base64!"}, "not valid base64"),
        (lambda e: {**e, "ak_chain": []}, "list of 1 to 4"),
        (lambda e: {**e, "extra": 1}, "unknown fields"),
        (lambda e: {**e, "attest": base64.b64encode(base64.b64decode(e["attest"])[:-3]).decode()}, "does not verify"),
    ],
)
def test_malformed_evidence_is_invalid(
    tpm: SoftwareTpm, maker: TestCa, unit: TpmUnit, change: object, expected: str
) -> None:
    evidence = change(unit.attestation([maker.issue_ak("AK", tpm.ak_public())]))  # type: ignore[operator]
    code, message = refusal(evidence, unit.csr, [maker.cert])
    assert code == "attestation_invalid" and expected in message


def test_an_attest_structure_that_is_no_certify_is_refused_by_the_parser(unit: TpmUnit) -> None:
    with pytest.raises(Refusal, match="TPM_GENERATED_VALUE"):
        tpm_format.parse_certify_info(b"\0" + unit.attest[1:])
    with pytest.raises(Refusal, match="TPM_ST_ATTEST_CERTIFY"):
        tpm_format.parse_certify_info(unit.attest[:4] + b"\x80\x18" + unit.attest[6:])
    with pytest.raises(Refusal, match="truncated"):
        tpm_format.parse_certify_info(unit.attest[:-1])
    assert tpm_format.parse_certify_info(unit.attest).extra_data == csr_sha256(unit.csr)


def _certify_bound_to(tpm: SoftwareTpm, unit: TpmUnit, qualifying: bytes) -> tuple[bytes, bytes]:
    tpm.persist(unit.key, KEY_HANDLE)
    try:
        return tpm.certify(KEY_HANDLE, qualifying)
    finally:
        tpm.unpersist(KEY_HANDLE)
