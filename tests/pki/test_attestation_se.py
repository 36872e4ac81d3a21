"""Secure-element key attestation: the device certificate an SE vendor provisioned (its chain made for the
test: vendor root, signer CA, device certificate), checked against a product's trusted vendor roots."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from fabguard.domain.errors import Refusal
from fabguard.pki import attestation
from tests.tpm_support import TestCa, csr_for, pem

NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def vendor() -> TestCa:
    return TestCa.make("Test SE vendor root")


def se_chain(vendor: TestCa, key: ec.EllipticCurvePrivateKey) -> list[str]:
    signer = TestCa.make("Test SE signer", issuer=vendor)
    return [pem(signer.issue("sn0123456789", key.public_key())), pem(signer.cert)]


def check(chain: list[str], csr_key: ec.EllipticCurvePrivateKey, roots: list[TestCa]) -> attestation.Attested:
    evidence = attestation.parse_evidence({"format": "se-chain", "chain": chain})
    return attestation.verify(evidence, csr_for("SN-SE-1", csr_key), [r.cert for r in roots], NOW)


def test_a_device_certificate_of_the_csr_key_under_a_trusted_vendor_verifies(vendor: TestCa) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    done = check(se_chain(vendor, key), key, [vendor])
    assert (done.format, done.root_subject, done.key_name) == ("se-chain", "CN=Test SE vendor root", None)


def test_a_csr_key_other_than_the_attested_one_is_invalid(vendor: TestCa) -> None:
    attested = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(Refusal) as info:
        check(se_chain(vendor, attested), ec.generate_private_key(ec.SECP256R1()), [vendor])
    assert info.value.code == "attestation_invalid"


def test_a_chain_to_a_vendor_the_product_does_not_trust_is_untrusted(vendor: TestCa) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(Refusal) as info:
        check(se_chain(TestCa.make("Another SE vendor"), key), key, [vendor])
    assert info.value.code == "attestation_untrusted"


def test_a_chain_whose_links_do_not_match_is_untrusted(vendor: TestCa) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    device, _ = se_chain(vendor, key)
    _, foreign_signer = se_chain(vendor, key)  # a signer of the same vendor, but not the device's
    with pytest.raises(Refusal) as info:
        check([device, foreign_signer], key, [vendor])
    assert info.value.code == "attestation_untrusted" and "not a chain" in info.value.message


def test_a_chain_without_the_vendor_signer_cannot_reach_the_root(vendor: TestCa) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    device, _ = se_chain(vendor, key)
    with pytest.raises(Refusal) as info:
        check([device], key, [vendor])
    assert info.value.code == "attestation_untrusted"


def test_the_trusted_root_itself_is_no_attestation(vendor: TestCa) -> None:
    with pytest.raises(Refusal) as info:
        check([vendor.pem], vendor.key, [vendor])
    assert info.value.code == "attestation_untrusted"


def test_a_device_certificate_that_is_a_ca_is_untrusted(vendor: TestCa) -> None:
    # The CSR's key in a CA certificate of the vendor's signer: a CA is no secure element's device.
    key = ec.generate_private_key(ec.SECP256R1())
    signer = TestCa.make("Test SE signer", issuer=vendor)
    chain = [pem(signer.issue("sn0123456789", key.public_key(), ca=True)), pem(signer.cert)]
    with pytest.raises(Refusal) as info:
        check(chain, key, [vendor])
    assert info.value.code == "attestation_untrusted" and "is a CA" in info.value.message
