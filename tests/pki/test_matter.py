"""Matter attestation certificates (PAA -> PAI -> DAC), read back from DER and checked rule by rule.

The rules are those of the Matter Core Specification: 6.1 (common certificate conventions), 6.2.2
(the DAC, PAI and PAA profiles and the encoding of Vendor and Product IDs) and 6.2.3.1 (attestation
information validation, the offline part). OpenSSL's chain verification and pkilint's RFC 5280 lint
are independent oracles on the same certificates.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from fabguard.domain.errors import FabGuardError
from fabguard.pki import matter
from fabguard.pki.keys import SigningKey, new_signing_key
from fabguard.pki.matter import (
    OID_PRODUCT_ID,
    OID_VENDOR_ID,
    AttestationProfileError,
    ProductId,
    VendorId,
    attestation_subject,
    check_attestation_chain,
    dac_certificate,
    paa_certificate,
    pai_certificate,
)
from fabguard.pki.profiles import Issuer

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
VID = VendorId(0xFFF1)
OTHER_VID = VendorId(0xFFF2)
PID = ProductId(0x8000)
OTHER_PID = ProductId(0x8001)
# DER of OBJECT IDENTIFIER 1.3.6.1.4.1.37244.2.1 and .2.2, written out by hand as the oracle.
VID_OID_DER = bytes.fromhex("060a2b0601040182a27c0201")
PID_OID_DER = bytes.fromhex("060a2b0601040182a27c0202")
UTF8_STRING = 0x0C
ROLES = ["paa", "pai", "dac"]
LINT = Path(sys.executable).parent / "lint_pkix_cert"
LINT_PAIR = Path(sys.executable).parent / "lint_pkix_signer_signee_cert_chain"


@dataclass(frozen=True)
class Chain:
    paa: Issuer
    pai: Issuer
    dac: x509.Certificate

    def certs(self) -> tuple[x509.Certificate, x509.Certificate, x509.Certificate]:
        """In the order check_attestation_chain takes them: DAC, PAI, PAA."""
        return self.dac, self.pai.certificate, self.paa.certificate


def build_chain(paa_vid: VendorId | None = VID, pai_pid: ProductId | None = PID, dac_pid: ProductId = PID) -> Chain:
    paa = paa_certificate(new_signing_key(), "FabGuard Test PAA", NOW, paa_vid)
    pai_key = new_signing_key()
    pai = Issuer(pai_certificate(paa, pai_key.public_key(), "FabGuard Test PAI", VID, pai_pid, NOW), pai_key)
    dac = dac_certificate(pai, new_signing_key().public_key(), "FabGuard Test DAC", VID, dac_pid, NOW)
    return Chain(paa, pai, dac)


def read_back(cert: x509.Certificate) -> x509.Certificate:
    return x509.load_der_x509_certificate(cert.public_bytes(serialization.Encoding.DER))


@pytest.fixture(scope="module")
def chain() -> Chain:
    return build_chain()


@pytest.fixture(scope="module")
def certs(chain: Chain) -> dict[str, x509.Certificate]:
    """The three certificates as a relying party sees them: parsed from their DER."""
    return {
        "paa": read_back(chain.paa.certificate),
        "pai": read_back(chain.pai.certificate),
        "dac": read_back(chain.dac),
    }


@pytest.fixture(scope="module")
def pems(chain: Chain, certs: dict[str, x509.Certificate], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("matter")
    for name, cert in certs.items():
        (out / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return out


def ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(kind)


def reissue(
    cert: x509.Certificate,
    signer: SigningKey,
    *,
    subject: x509.Name | None = None,
    issuer: x509.Name | None = None,
    public_key: ec.EllipticCurvePublicKey | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    replace: dict[type[x509.ExtensionType], tuple[x509.ExtensionType, bool] | None] | None = None,
    algorithm: hashes.HashAlgorithm | None = None,
) -> x509.Certificate:
    """A copy of ``cert`` with the given fields changed, re-signed: how a test forges a certificate that breaks one rule.

    ``replace`` maps an extension class to its new (value, critical), or to None to drop it.
    """
    pending = dict(replace or {})
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject or cert.subject)
        .issuer_name(issuer or cert.issuer)
        .public_key(public_key or cert.public_key())
        .serial_number(cert.serial_number)
        .not_valid_before(not_before or cert.not_valid_before_utc)
        .not_valid_after(not_after or cert.not_valid_after_utc)
    )
    for extension in cert.extensions:
        kind = type(extension.value)
        if kind not in pending:
            builder = builder.add_extension(extension.value, extension.critical)
        elif (new := pending.pop(kind)) is not None:
            builder = builder.add_extension(new[0], new[1])
    for new in pending.values():
        if new is not None:
            builder = builder.add_extension(new[0], new[1])
    return builder.sign(signer, algorithm or hashes.SHA256())


def refused_rule(check: Callable[[], object]) -> str:
    with pytest.raises(AttestationProfileError) as caught:
        check()
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, FabGuardError)
    return caught.value.rule


def key_usage_bits(cert: x509.Certificate) -> set[str]:
    ku = ext(cert, x509.KeyUsage).value
    assert isinstance(ku, x509.KeyUsage)
    names = ["digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement"]
    names += ["key_cert_sign", "crl_sign"]
    return {n for n in names if getattr(ku, n)}


def run(*cmd: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=120, check=False)


def test_public_api_is_exactly_what___all___names() -> None:
    modules = {"chain", "commissioning", "identity", "issue", "onboarding", "spake2p"}
    assert set(matter.__all__) == {n for n in dir(matter) if not n.startswith("_")} - modules


# ----------------------------------------------------------------------------- the profile, read back


@pytest.mark.parametrize("role", ROLES)
def test_public_key_is_ecdsa_on_p256(certs: dict[str, x509.Certificate], role: str) -> None:
    key = certs[role].public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert isinstance(key.curve, ec.SECP256R1)


@pytest.mark.parametrize("role", ROLES)
def test_signature_algorithm_is_ecdsa_with_sha256(certs: dict[str, x509.Certificate], role: str) -> None:
    assert certs[role].signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256
    assert isinstance(certs[role].signature_hash_algorithm, hashes.SHA256)


@pytest.mark.parametrize("role", ROLES)
def test_version_is_3(certs: dict[str, x509.Certificate], role: str) -> None:
    assert certs[role].version is x509.Version.v3


@pytest.mark.parametrize("role", ROLES)
def test_serial_number_is_positive_and_at_most_20_octets(certs: dict[str, x509.Certificate], role: str) -> None:
    serial = certs[role].serial_number
    assert serial > 0
    assert serial.bit_length() // 8 + 1 <= 20  # DER INTEGER octets, sign bit included
    assert len({c.serial_number for c in certs.values()}) == 3


@pytest.mark.parametrize(("role", "oid_der", "value"), [
    ("paa", VID_OID_DER, b"FFF1"), ("pai", VID_OID_DER, b"FFF1"), ("pai", PID_OID_DER, b"8000"),
    ("dac", VID_OID_DER, b"FFF1"), ("dac", PID_OID_DER, b"8000"),
])  # fmt: skip
def test_vid_and_pid_are_utf8_strings_under_the_matter_oids(
    certs: dict[str, x509.Certificate], role: str, oid_der: bytes, value: bytes
) -> None:
    assert oid_der + bytes([UTF8_STRING, len(value)]) + value in certs[role].subject.public_bytes()


def test_openssl_reads_vid_and_pid_as_utf8_strings(pems: Path) -> None:
    result = run(
        "openssl", "x509", "-in", pems / "dac.pem", "-noout", "-subject", "-nameopt", "multiline,show_type,oid"
    )
    assert result.returncode == 0, result.stderr
    assert "1.3.6.1.4.1.37244.2.1 = UTF8STRING:FFF1" in result.stdout
    assert "1.3.6.1.4.1.37244.2.2 = UTF8STRING:8000" in result.stdout


def test_vid_and_pid_are_exactly_four_upper_case_hex_digits() -> None:
    dac = build_chain(paa_vid=None, pai_pid=None, dac_pid=ProductId(0x0A0B)).dac
    assert [a.value for a in dac.subject.get_attributes_for_oid(OID_VENDOR_ID)] == ["FFF1"]
    assert [a.value for a in dac.subject.get_attributes_for_oid(OID_PRODUCT_ID)] == ["0A0B"]
    assert (str(VendorId(0x1)), str(VendorId(0xABC)), str(ProductId(0xFFFF))) == ("0001", "0ABC", "FFFF")


@pytest.mark.parametrize(
    ("role", "vid", "pid"), [("paa", ["FFF1"], []), ("pai", ["FFF1"], ["8000"]), ("dac", ["FFF1"], ["8000"])]
)
def test_subject_carries_the_ids_its_role_requires(
    certs: dict[str, x509.Certificate], role: str, vid: list[str], pid: list[str]
) -> None:
    """PAA: VID only (PID never); PAI: VID, PID when product-scoped; DAC: both, once each."""
    subject = certs[role].subject
    assert [a.value for a in subject.get_attributes_for_oid(OID_VENDOR_ID)] == vid
    assert [a.value for a in subject.get_attributes_for_oid(OID_PRODUCT_ID)] == pid
    assert len(subject.get_attributes_for_oid(NameOID.COMMON_NAME)) == 1


def test_paa_basic_constraints_are_critical_ca_with_path_length_1(certs: dict[str, x509.Certificate]) -> None:
    bc = ext(certs["paa"], x509.BasicConstraints)
    assert bc.critical and bc.value == x509.BasicConstraints(ca=True, path_length=1)


def test_pai_basic_constraints_are_critical_ca_with_path_length_0(certs: dict[str, x509.Certificate]) -> None:
    bc = ext(certs["pai"], x509.BasicConstraints)
    assert bc.critical and bc.value == x509.BasicConstraints(ca=True, path_length=0)


def test_dac_basic_constraints_are_critical_and_not_ca(certs: dict[str, x509.Certificate]) -> None:
    bc = ext(certs["dac"], x509.BasicConstraints)
    assert bc.critical and bc.value == x509.BasicConstraints(ca=False, path_length=None)


@pytest.mark.parametrize("role", ["paa", "pai"])
def test_ca_key_usage_is_critical_key_cert_sign_and_crl_sign(certs: dict[str, x509.Certificate], role: str) -> None:
    assert ext(certs[role], x509.KeyUsage).critical
    assert key_usage_bits(certs[role]) == {"key_cert_sign", "crl_sign"}


def test_dac_key_usage_is_critical_digital_signature_only(certs: dict[str, x509.Certificate]) -> None:
    assert ext(certs["dac"], x509.KeyUsage).critical
    assert key_usage_bits(certs["dac"]) == {"digital_signature"}


@pytest.mark.parametrize("role", ROLES)
def test_subject_key_identifier_is_non_critical_sha1_of_the_key(certs: dict[str, x509.Certificate], role: str) -> None:
    ski = ext(certs[role], x509.SubjectKeyIdentifier)
    assert not ski.critical
    assert isinstance(ski.value, x509.SubjectKeyIdentifier) and len(ski.value.digest) == 20
    assert ski.value == x509.SubjectKeyIdentifier.from_public_key(certs[role].public_key())


@pytest.mark.parametrize(("role", "issuer"), [("paa", "paa"), ("pai", "paa"), ("dac", "pai")])
def test_authority_key_identifier_is_the_issuers_subject_key_identifier(
    certs: dict[str, x509.Certificate], role: str, issuer: str
) -> None:
    """Present on all three; on the self-signed PAA it repeats its own SKID."""
    aki = ext(certs[role], x509.AuthorityKeyIdentifier)
    ski = ext(certs[issuer], x509.SubjectKeyIdentifier).value
    assert not aki.critical
    assert isinstance(aki.value, x509.AuthorityKeyIdentifier) and isinstance(ski, x509.SubjectKeyIdentifier)
    assert aki.value.key_identifier == ski.digest
    assert aki.value.authority_cert_issuer is None and aki.value.authority_cert_serial_number is None


@pytest.mark.parametrize(("role", "issuer"), [("paa", "paa"), ("pai", "paa"), ("dac", "pai")])
def test_each_certificate_is_signed_by_the_one_above(
    certs: dict[str, x509.Certificate], role: str, issuer: str
) -> None:
    assert certs[role].issuer == certs[issuer].subject
    certs[role].verify_directly_issued_by(certs[issuer])


def test_dac_has_no_well_defined_expiry_by_default(certs: dict[str, x509.Certificate]) -> None:
    dac = certs["dac"]
    assert dac.not_valid_after_utc == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert b"\x18\x0f99991231235959Z" in dac.tbs_certificate_bytes  # GeneralizedTime, RFC 5280 4.1.2.5


def test_dac_expiry_can_be_given(chain: Chain) -> None:
    end = NOW + timedelta(days=3650)
    dac = dac_certificate(chain.pai, new_signing_key().public_key(), "DAC", VID, PID, NOW, not_after=end)
    assert dac.not_valid_after_utc == end


def test_validity_starts_just_before_now_and_nests_in_the_issuer(certs: dict[str, x509.Certificate]) -> None:
    for cert in certs.values():
        assert NOW - timedelta(minutes=10) < cert.not_valid_before_utc <= NOW
    for role, issuer in (("pai", "paa"), ("dac", "pai")):
        assert (
            certs[issuer].not_valid_before_utc <= certs[role].not_valid_before_utc <= certs[issuer].not_valid_after_utc
        )
    assert certs["pai"].not_valid_after_utc <= certs["paa"].not_valid_after_utc


def test_pai_never_outlives_its_paa(chain: Chain) -> None:
    pai = pai_certificate(chain.paa, new_signing_key().public_key(), "PAI", VID, None, NOW, years=100)
    assert pai.not_valid_after_utc == chain.paa.certificate.not_valid_after_utc


# ----------------------------------------------------------------------------- check_attestation_chain


@pytest.mark.parametrize(
    ("paa_vid", "pai_pid"),
    [(VID, PID), (VID, None), (None, PID), (None, None)],
    ids=["vid-scoped-paa-product-pai", "vid-scoped-paa-vendor-pai", "shared-paa-product-pai", "shared-paa-vendor-pai"],
)
def test_well_formed_chains_pass_the_check(paa_vid: VendorId | None, pai_pid: ProductId | None) -> None:
    dac, pai, paa = build_chain(paa_vid=paa_vid, pai_pid=pai_pid).certs()
    check_attestation_chain(read_back(dac), read_back(pai), read_back(paa), at=NOW)


def test_dac_vid_differing_from_the_pai_vid_is_refused(chain: Chain) -> None:
    forged = reissue(chain.dac, chain.pai.key, subject=attestation_subject("DAC", OTHER_VID, PID))
    assert refused_rule(lambda: check_attestation_chain(forged, chain.pai.certificate, chain.paa.certificate)) == (
        "dac-vid-matches-pai"
    )


def test_dac_pid_differing_from_the_pai_pid_is_refused(chain: Chain) -> None:
    forged = reissue(chain.dac, chain.pai.key, subject=attestation_subject("DAC", VID, OTHER_PID))
    assert refused_rule(lambda: check_attestation_chain(forged, chain.pai.certificate, chain.paa.certificate)) == (
        "dac-pid-matches-pai"
    )


def test_any_dac_pid_is_accepted_under_a_pai_without_pid() -> None:
    check_attestation_chain(*build_chain(pai_pid=None, dac_pid=OTHER_PID).certs())


def test_pai_vid_differing_from_the_paa_vid_is_refused(chain: Chain) -> None:
    """The DAC agrees with its forged PAI, so only the PAA's VID scope is broken."""
    pai = reissue(chain.pai.certificate, chain.paa.key, subject=attestation_subject("PAI", OTHER_VID, PID))
    dac = reissue(chain.dac, chain.pai.key, issuer=pai.subject, subject=attestation_subject("DAC", OTHER_VID, PID))
    assert refused_rule(lambda: check_attestation_chain(dac, pai, chain.paa.certificate)) == "pai-vid-matches-paa"


def test_a_paa_without_vid_may_sign_a_pai_of_any_vendor() -> None:
    shared = build_chain(paa_vid=None)
    pai = reissue(shared.pai.certificate, shared.paa.key, subject=attestation_subject("PAI", OTHER_VID, PID))
    dac = reissue(shared.dac, shared.pai.key, issuer=pai.subject, subject=attestation_subject("DAC", OTHER_VID, PID))
    check_attestation_chain(dac, pai, shared.paa.certificate)


Forged = tuple[str, tuple[x509.Certificate, x509.Certificate, x509.Certificate]]


@pytest.fixture(scope="module")
def forgeries(chain: Chain) -> dict[str, Forged]:
    """Chains that each break exactly one rule: id -> (the rule the check must name, (dac, pai, paa))."""
    paa, pai, dac = chain.paa, chain.pai, chain.dac
    dac_key = chain.dac.public_key()
    assert isinstance(dac_key, ec.EllipticCurvePublicKey)

    def bad_dac(**changes: object) -> tuple[x509.Certificate, x509.Certificate, x509.Certificate]:
        return reissue(dac, pai.key, **changes), pai.certificate, paa.certificate

    def bad_pai(**changes: object) -> tuple[x509.Certificate, x509.Certificate, x509.Certificate]:
        return dac, reissue(pai.certificate, paa.key, **changes), paa.certificate

    def bad_paa(**changes: object) -> tuple[x509.Certificate, x509.Certificate, x509.Certificate]:
        return dac, pai.certificate, reissue(paa.certificate, paa.key, **changes)

    def dac_subject(*attributes: x509.NameAttribute[str]) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "DAC"), *attributes])

    def ku(**bits: bool) -> x509.KeyUsage:
        names = ["digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement"]
        names += ["key_cert_sign", "crl_sign", "encipher_only", "decipher_only"]
        return x509.KeyUsage(**{n: bits.get(n, False) for n in names})

    vid, pid = x509.NameAttribute(OID_VENDOR_ID, "FFF1"), x509.NameAttribute(OID_PRODUCT_ID, "8000")
    other_paa_key = new_signing_key()
    return {
        "dac-p384-key": ("public-key", bad_dac(public_key=ec.generate_private_key(ec.SECP384R1()).public_key())),
        "dac-sha384-signature": ("signature-algorithm", bad_dac(algorithm=hashes.SHA384())),
        "dac-is-ca": ("basic-constraints", bad_dac(replace={x509.BasicConstraints: (x509.BasicConstraints(True, None), True)})),
        "dac-basic-constraints-not-critical": ("basic-constraints", bad_dac(replace={x509.BasicConstraints: (x509.BasicConstraints(False, None), False)})),
        "dac-without-basic-constraints": ("basic-constraints", bad_dac(replace={x509.BasicConstraints: None})),
        "pai-path-length-1": ("basic-constraints", bad_pai(replace={x509.BasicConstraints: (x509.BasicConstraints(True, 1), True)})),
        "paa-path-length-2": ("basic-constraints", bad_paa(replace={x509.BasicConstraints: (x509.BasicConstraints(True, 2), True)})),
        "dac-key-usage-key-cert-sign": ("key-usage", bad_dac(replace={x509.KeyUsage: (ku(digital_signature=True, key_cert_sign=True), True)})),
        "dac-key-usage-not-critical": ("key-usage", bad_dac(replace={x509.KeyUsage: (ku(digital_signature=True), False)})),
        "pai-key-usage-without-crl-sign": ("key-usage", bad_pai(replace={x509.KeyUsage: (ku(key_cert_sign=True), True)})),
        "pai-key-usage-key-agreement": ("key-usage", bad_pai(replace={x509.KeyUsage: (ku(key_cert_sign=True, crl_sign=True, key_agreement=True), True)})),
        "dac-without-skid": ("subject-key-id", bad_dac(replace={x509.SubjectKeyIdentifier: None})),
        "dac-skid-critical": ("subject-key-id", bad_dac(replace={x509.SubjectKeyIdentifier: (x509.SubjectKeyIdentifier.from_public_key(dac_key), True)})),
        "dac-without-akid": ("authority-key-id", bad_dac(replace={x509.AuthorityKeyIdentifier: None})),
        "dac-vid-lower-case": ("vid-pid-encoding", bad_dac(subject=dac_subject(x509.NameAttribute(OID_VENDOR_ID, "fff1"), pid))),
        "dac-vid-three-digits": ("vid-pid-encoding", bad_dac(subject=dac_subject(x509.NameAttribute(OID_VENDOR_ID, "FF1"), pid))),
        "dac-vid-twice": ("vid-pid-encoding", bad_dac(subject=dac_subject(vid, vid, pid))),
        # cryptography writes any other string type only through this private argument.
        "dac-vid-printable-string": ("vid-pid-encoding", bad_dac(subject=dac_subject(x509.NameAttribute(OID_VENDOR_ID, "FFF1", _type=_ASN1Type.PrintableString), pid))),
        "dac-vid-0000": ("vendor-id-range", bad_dac(subject=dac_subject(x509.NameAttribute(OID_VENDOR_ID, "0000"), pid))),
        "dac-without-pid": ("dac-has-vid-and-pid", bad_dac(subject=dac_subject(vid))),
        "pai-without-vid": ("pai-has-vid", bad_pai(subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "PAI"), pid]))),
        "paa-with-pid": ("paa-without-pid", bad_paa(subject=attestation_subject("PAA", VID, PID), issuer=attestation_subject("PAA", VID, PID))),
        "dac-issuer-name-not-the-pai": ("issuer-name", bad_dac(issuer=attestation_subject("Other PAI", VID, PID))),
        "dac-akid-not-the-pai-skid": ("key-id-linkage", bad_dac(replace={x509.AuthorityKeyIdentifier: (x509.AuthorityKeyIdentifier(b"\x01" * 20, None, None), False)})),
        "dac-signed-by-another-key": ("signature", (reissue(dac, new_signing_key()), pai.certificate, paa.certificate)),
        "pai-signed-by-another-paa-key": ("signature", (dac, reissue(pai.certificate, other_paa_key), paa.certificate)),
        "dac-issued-before-the-pai": ("issued-within-issuer-validity", bad_dac(not_before=pai.certificate.not_valid_before_utc - timedelta(days=1))),
        "pai-issued-before-the-paa": ("issued-within-issuer-validity", bad_pai(not_before=paa.certificate.not_valid_before_utc - timedelta(days=1))),
    }  # fmt: skip


FORGERIES = [
    "dac-p384-key", "dac-sha384-signature", "dac-is-ca", "dac-basic-constraints-not-critical",
    "dac-without-basic-constraints", "pai-path-length-1", "paa-path-length-2", "dac-key-usage-key-cert-sign",
    "dac-key-usage-not-critical", "pai-key-usage-without-crl-sign", "pai-key-usage-key-agreement", "dac-without-skid",
    "dac-skid-critical", "dac-without-akid", "dac-vid-lower-case", "dac-vid-three-digits", "dac-vid-twice",
    "dac-vid-printable-string", "dac-vid-0000", "dac-without-pid", "pai-without-vid", "paa-with-pid",
    "dac-issuer-name-not-the-pai", "dac-akid-not-the-pai-skid", "dac-signed-by-another-key",
    "pai-signed-by-another-paa-key", "dac-issued-before-the-pai", "pai-issued-before-the-paa",
]  # fmt: skip


def test_every_forgery_is_exercised(forgeries: dict[str, Forged]) -> None:
    assert sorted(forgeries) == sorted(FORGERIES)


@pytest.mark.parametrize("forgery", FORGERIES)
def test_chain_breaking_one_rule_is_refused_naming_that_rule(forgeries: dict[str, Forged], forgery: str) -> None:
    rule, (dac, pai, paa) = forgeries[forgery]
    assert refused_rule(lambda: check_attestation_chain(read_back(dac), read_back(pai), read_back(paa))) == rule


def test_refusal_message_names_the_certificate(chain: Chain) -> None:
    forged = reissue(chain.dac, chain.pai.key, subject=attestation_subject("DAC", OTHER_VID, PID))
    with pytest.raises(AttestationProfileError, match=r"^DAC: vendor ID FFF2 differs from the PAI's FFF1$"):
        check_attestation_chain(forged, chain.pai.certificate, chain.paa.certificate)


def test_dac_must_be_valid_at_the_time_asked(chain: Chain) -> None:
    end = NOW + timedelta(days=1)
    dac = dac_certificate(chain.pai, new_signing_key().public_key(), "DAC", VID, PID, NOW, not_after=end)
    check_attestation_chain(dac, chain.pai.certificate, chain.paa.certificate, at=NOW)
    late = end + timedelta(seconds=1)
    assert refused_rule(
        lambda: check_attestation_chain(dac, chain.pai.certificate, chain.paa.certificate, at=late)
    ) == ("dac-valid-at-time")


def test_chain_is_judged_at_the_dac_not_before_so_an_expired_pai_does_not_matter(chain: Chain) -> None:
    """6.2.3.1: a device made while its PAI was valid stays attestable after the PAI expires."""
    short_pai = reissue(chain.pai.certificate, chain.paa.key, not_after=NOW + timedelta(days=1))
    check_attestation_chain(chain.dac, short_pai, chain.paa.certificate, at=NOW + timedelta(days=400))


# ----------------------------------------------------------------------------- refused values and requests


@pytest.mark.parametrize("value", [0x0000, 0xFFF5, 0xFFFE, 0xFFFF, 0x10000, -1, True, "FFF1", None])
def test_invalid_vendor_id_is_refused(value: object) -> None:
    assert refused_rule(lambda: VendorId(value)) == "vendor-id-range"


@pytest.mark.parametrize("value", [0x0001, 0xFFF0, 0xFFF1, 0xFFF4])
def test_vendor_id_range_ends_are_accepted(value: int) -> None:
    assert VendorId(value).value == value
    assert VendorId(value).is_test == (value >= 0xFFF1)


@pytest.mark.parametrize("value", [0x0000, 0x10000, -1, True, "8000", None])
def test_invalid_product_id_is_refused(value: object) -> None:
    assert refused_rule(lambda: ProductId(value)) == "product-id-range"


@pytest.mark.parametrize("value", [0x0001, 0xFFFF])
def test_product_id_range_ends_are_accepted(value: int) -> None:
    assert ProductId(value).value == value


@pytest.mark.parametrize("name", ["", "x" * 65])
def test_common_name_outside_1_to_64_characters_is_refused(name: str) -> None:
    assert refused_rule(lambda: attestation_subject(name, VID, PID)) == "common-name"


def test_dac_for_another_vendor_than_the_pai_is_not_issued(chain: Chain) -> None:
    key = new_signing_key().public_key()
    assert refused_rule(lambda: dac_certificate(chain.pai, key, "DAC", OTHER_VID, PID, NOW)) == "dac-vid-matches-pai"


def test_dac_for_another_product_than_the_pai_is_not_issued(chain: Chain) -> None:
    key = new_signing_key().public_key()
    assert refused_rule(lambda: dac_certificate(chain.pai, key, "DAC", VID, OTHER_PID, NOW)) == "dac-pid-matches-pai"


def test_pai_for_another_vendor_than_the_paa_is_not_issued(chain: Chain) -> None:
    key = new_signing_key().public_key()
    assert refused_rule(lambda: pai_certificate(chain.paa, key, "PAI", OTHER_VID, None, NOW)) == "pai-vid-matches-paa"


@pytest.mark.parametrize("when", [NOW - timedelta(days=1), NOW + timedelta(days=365 * 30)], ids=["before", "after"])
def test_dac_is_not_issued_outside_the_pai_validity(chain: Chain, when: datetime) -> None:
    key = new_signing_key().public_key()
    assert (
        refused_rule(lambda: dac_certificate(chain.pai, key, "DAC", VID, PID, when)) == "issued-within-issuer-validity"
    )


def test_dac_expiring_before_it_starts_is_not_issued(chain: Chain) -> None:
    key = new_signing_key().public_key()
    assert refused_rule(
        lambda: dac_certificate(chain.pai, key, "DAC", VID, PID, NOW, not_after=NOW - timedelta(days=1))
    ) == ("validity-period")


@pytest.mark.parametrize(
    "key",
    [ec.generate_private_key(ec.SECP384R1()).public_key(), ed25519.Ed25519PrivateKey.generate().public_key()],
    ids=["p384", "ed25519"],
)
def test_device_keys_other_than_p256_are_not_certified(chain: Chain, key: CertificatePublicKeyTypes) -> None:
    assert refused_rule(lambda: dac_certificate(chain.pai, key, "DAC", VID, PID, NOW)) == "public-key"
    assert refused_rule(lambda: pai_certificate(chain.paa, key, "PAI", VID, PID, NOW)) == "public-key"


@pytest.mark.parametrize(
    "key", [ec.generate_private_key(ec.SECP384R1()), ed25519.Ed25519PrivateKey.generate()], ids=["p384", "ed25519"]
)
def test_paa_keys_other_than_p256_are_refused(key: SigningKey) -> None:
    assert refused_rule(lambda: paa_certificate(key, "PAA", NOW, VID)) == "public-key"


# ----------------------------------------------------------------------------- oracles


def test_openssl_verifies_the_dac_through_the_pai_to_the_paa(pems: Path) -> None:
    # The chain is made at NOW (2030), so OpenSSL is asked to judge it then.
    at = str(int(NOW.timestamp()))
    for strict in ([], ["-x509_strict"]):
        result = run(
            "openssl", "verify", *strict, "-attime", at, "-CAfile", pems / "paa.pem", "-untrusted", pems / "pai.pem",
            pems / "dac.pem",
        )  # fmt: skip
        assert result.returncode == 0 and result.stdout.strip().endswith(": OK"), result.stdout + result.stderr


def test_openssl_does_not_verify_the_dac_against_another_paa(pems: Path, tmp_path: Path) -> None:
    """Control: the oracle is not a rubber stamp."""
    other = tmp_path / "other-paa.pem"
    other.write_bytes(build_chain().paa.certificate.public_bytes(serialization.Encoding.PEM))
    at = str(int(NOW.timestamp()))
    result = run("openssl", "verify", "-attime", at, "-CAfile", other, "-untrusted", pems / "pai.pem", pems / "dac.pem")
    assert result.returncode != 0, result.stdout


@pytest.mark.parametrize("role", ROLES)
def test_pkilint_finds_no_error_in_certificate(pems: Path, role: str) -> None:
    result = run(LINT, "lint", "-s", "ERROR", pems / f"{role}.pem")
    findings = result.stdout.strip()
    assert "(ERROR)" not in findings and "(FATAL)" not in findings, f"pkilint on {role}.pem:\n{findings}"
    assert result.returncode == 0, f"pkilint on {role}.pem exited {result.returncode}:\n{findings}\n{result.stderr}"


@pytest.mark.parametrize(("role", "issuer"), [("pai", "paa"), ("dac", "pai")])
def test_pkilint_finds_each_certificate_consistent_with_its_issuer(pems: Path, role: str, issuer: str) -> None:
    result = run(LINT_PAIR, "lint", "-s", "ERROR", pems / f"{issuer}.pem", pems / f"{role}.pem")
    assert result.returncode == 0, f"pkilint pair {issuer} -> {role}:\n{result.stdout}\n{result.stderr}"
