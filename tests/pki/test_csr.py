"""Device CSRs: reading every wire form, then proof of possession, key type and a subject of only the serial."""

from __future__ import annotations

import base64
import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import AttributeOID, NameOID
from hypothesis import given
from hypothesis import strategies as st
from pyasn1.codec.der import decoder, encoder
from pyasn1.type import univ
from pyasn1_alt_modules import rfc2986, rfc5280

from fabguard.domain.errors import Refusal
from fabguard.domain.values import KeyType
from fabguard.pki.csr import check_device_csr, load_csr
from fabguard.pki.keys import spki_fingerprint

SERIAL = "SN0000001"
MAX = 8 * 1024

DeviceKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


def subject(*attrs: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attrs])


def make_csr(
    key: DeviceKey | None = None,
    name: x509.Name | None = None,
    *,
    extensions: list[x509.ExtensionType] | None = None,
    attributes: list[tuple[x509.ObjectIdentifier, bytes]] | None = None,
) -> x509.CertificateSigningRequest:
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        name if name is not None else subject((NameOID.SERIAL_NUMBER, SERIAL))
    )
    for ext in extensions or []:
        builder = builder.add_extension(ext, critical=False)
    for oid, value in attributes or []:
        builder = builder.add_attribute(oid, value)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)


def der(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.DER)


def pem(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.PEM)


def refusal(fn: object, *args: object) -> str:
    with pytest.raises(Refusal) as info:
        fn(*args)  # type: ignore[operator]
    return info.value.code


# ------------------------------------------------------------------ load_csr: wire forms
def test_pem_csr_is_loaded() -> None:
    csr = make_csr()
    assert load_csr(pem(csr), MAX) == csr


def test_pem_csr_with_surrounding_whitespace_is_loaded() -> None:
    csr = make_csr()
    assert load_csr(b"\n  " + pem(csr) + b"\n\n", MAX) == csr


def test_der_csr_is_loaded() -> None:
    csr = make_csr()
    assert load_csr(der(csr), MAX) == csr


def test_base64_der_csr_as_sent_by_est_is_loaded() -> None:
    csr = make_csr()
    assert load_csr(base64.b64encode(der(csr)), MAX) == csr


def test_line_wrapped_base64_der_csr_is_loaded() -> None:
    csr = make_csr()
    b64 = base64.b64encode(der(csr))
    wrapped = b"\r\n".join(b64[i : i + 64] for i in range(0, len(b64), 64)) + b"\r\n"
    assert load_csr(wrapped, MAX) == csr


def test_empty_csr_is_refused_as_csr_invalid() -> None:
    assert refusal(load_csr, b"", MAX) == "csr_invalid"


def test_csr_over_the_size_limit_is_refused_before_parsing() -> None:
    data = pem(make_csr())
    assert load_csr(data, len(data)) is not None
    with pytest.raises(Refusal) as info:
        load_csr(data, len(data) - 1)
    assert info.value.code == "csr_invalid"
    assert str(len(data)) in info.value.message


def test_huge_input_is_refused_as_csr_invalid() -> None:
    assert refusal(load_csr, b"-----BEGIN CERTIFICATE REQUEST-----" + b"A" * 10_000_000, MAX) == "csr_invalid"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"hello", id="text"),
        pytest.param(b"\x30\x03\x02\x01\x01", id="der-not-a-csr"),
        pytest.param(b"\x30\x82\xff\xff", id="der-truncated"),
        pytest.param(b"\xff\xfe\x00garbage", id="binary"),
        pytest.param(b"aGVsbG8gd29ybGQ=", id="base64-not-der"),
        pytest.param(b"!!!notbase64!!!", id="bad-base64"),
        pytest.param(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", id="pem-junk"),
        pytest.param(b"-----BEGIN CERTIFICATE REQUEST-----\n", id="pem-unterminated"),
        pytest.param(b"   \n\t ", id="whitespace"),
    ],
)
def test_garbage_is_refused_as_csr_invalid(data: bytes) -> None:
    assert refusal(load_csr, data, MAX) == "csr_invalid"


def test_a_certificate_is_not_accepted_as_a_csr() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = subject((NameOID.COMMON_NAME, "x"))
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    assert refusal(load_csr, cert.public_bytes(serialization.Encoding.PEM), MAX) == "csr_invalid"
    assert refusal(load_csr, cert.public_bytes(serialization.Encoding.DER), MAX) == "csr_invalid"


@given(st.binary(max_size=2048))
def test_arbitrary_bytes_are_loaded_or_refused_as_csr_invalid(data: bytes) -> None:
    try:
        load_csr(data, MAX)
    except Refusal as r:
        assert r.code == "csr_invalid"


@given(st.binary(min_size=1, max_size=64), st.integers(min_value=0, max_value=400))
def test_corrupted_der_is_loaded_or_refused_as_csr_invalid(patch: bytes, at: int) -> None:
    data = bytearray(der(make_csr()))
    data[at : at + len(patch)] = patch
    try:
        check_device_csr(load_csr(bytes(data), MAX))
    except Refusal as r:
        assert r.code in {"csr_invalid", "key_type_not_allowed", "serial_mismatch"}


# ------------------------------------------------------------------ check_device_csr: key types
@pytest.mark.parametrize(
    ("key", "key_type"),
    [
        pytest.param(ec.generate_private_key(ec.SECP256R1()), KeyType.EC_P256, id="p256"),
        pytest.param(ec.generate_private_key(ec.SECP384R1()), KeyType.EC_P384, id="p384"),
        pytest.param(ed25519.Ed25519PrivateKey.generate(), KeyType.ED25519, id="ed25519"),
    ],
)
def test_supported_key_is_accepted_with_its_key_type(key: DeviceKey, key_type: KeyType) -> None:
    checked = check_device_csr(make_csr(key))
    assert checked.facts.key_type is key_type
    assert checked.facts.subject_serial == SERIAL
    assert checked.facts.key_fingerprint == spki_fingerprint(key.public_key())
    assert checked.public_key == key.public_key()


def test_key_fingerprint_is_the_same_across_csrs_of_one_key_and_differs_between_keys() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    a = check_device_csr(make_csr(key)).facts.key_fingerprint
    b = check_device_csr(make_csr(key, subject((NameOID.SERIAL_NUMBER, "SN0000002")))).facts.key_fingerprint
    c = check_device_csr(make_csr()).facts.key_fingerprint
    assert a == b != c
    assert len(a) == 64 and int(a, 16) >= 0


@pytest.mark.parametrize("bits", [2048, 3072])
def test_rsa_key_is_refused_as_key_type_not_allowed(bits: int) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    assert refusal(check_device_csr, make_csr(key)) == "key_type_not_allowed"


@pytest.mark.parametrize("curve", [ec.SECP256K1(), ec.SECP521R1(), ec.BrainpoolP256R1()], ids=lambda c: c.name)
def test_other_elliptic_curve_is_refused_as_key_type_not_allowed(curve: ec.EllipticCurve) -> None:
    key = ec.generate_private_key(curve)
    with pytest.raises(Refusal) as info:
        check_device_csr(make_csr(key))
    assert info.value.code == "key_type_not_allowed"
    assert curve.name in info.value.message


def test_secp256k1_key_is_refused_as_key_type_not_allowed() -> None:
    key = ec.generate_private_key(ec.SECP256K1())
    assert refusal(check_device_csr, make_csr(key)) == "key_type_not_allowed"


# ------------------------------------------------------------------ proof of possession
def flip_last_signature_byte(data: bytes) -> bytes:
    # The signature BIT STRING ends the DER: its last byte is the last byte of the signature.
    return data[:-1] + bytes([data[-1] ^ 0x01])


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(ec.generate_private_key(ec.SECP256R1()), id="p256"),
        pytest.param(ec.generate_private_key(ec.SECP384R1()), id="p384"),
        pytest.param(ed25519.Ed25519PrivateKey.generate(), id="ed25519"),
    ],
)
def test_csr_with_broken_signature_is_refused_as_csr_invalid(key: DeviceKey) -> None:
    broken = load_csr(flip_last_signature_byte(der(make_csr(key))), MAX)
    assert not broken.is_signature_valid
    with pytest.raises(Refusal) as info:
        check_device_csr(broken)
    assert info.value.code == "csr_invalid"
    assert "signature" in info.value.message


def test_csr_whose_subject_was_changed_after_signing_is_refused_as_csr_invalid() -> None:
    original = der(make_csr())
    forged = original.replace(SERIAL.encode(), b"SN0000666")
    assert forged != original
    assert refusal(check_device_csr, load_csr(forged, MAX)) == "csr_invalid"


def signature_part(csr: x509.CertificateSigningRequest) -> bytes:
    """The signatureAlgorithm and signature that follow the CertificationRequestInfo in the DER."""
    data = der(csr)
    tbs = csr.tbs_certrequest_bytes
    return data[data.index(tbs) + len(tbs) :]


def der_sequence(body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return b"\x30" + bytes([n]) + body
    octets = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b"\x30" + bytes([0x80 | len(octets)]) + octets + body


def test_csr_carrying_the_signature_of_another_key_is_refused_as_csr_invalid() -> None:
    # A victim's public key (e.g. read from a genuine unit) with a signature made by someone else.
    victim = make_csr()
    attacker = make_csr()
    forged = der_sequence(victim.tbs_certrequest_bytes + signature_part(attacker))
    csr = load_csr(forged, MAX)
    assert csr.public_key() == victim.public_key()
    assert refusal(check_device_csr, csr) == "csr_invalid"


# ------------------------------------------------------------------ nothing unexpected in it
@pytest.mark.parametrize(
    "extension",
    [
        pytest.param(x509.SubjectAlternativeName([x509.DNSName("evil.example")]), id="san-dns"),
        pytest.param(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("10.0.0.1"))]), id="san-ip"),
        pytest.param(x509.BasicConstraints(ca=True, path_length=None), id="ca-true"),
        pytest.param(
            x509.ExtendedKeyUsage(
                [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, x509.oid.ExtendedKeyUsageOID.CODE_SIGNING]
            ),
            id="eku",
        ),
        pytest.param(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            id="key-usage-cert-sign",
        ),
    ],
)
def test_csr_requesting_extensions_is_refused_as_csr_invalid(extension: x509.ExtensionType) -> None:
    assert refusal(check_device_csr, make_csr(extensions=[extension])) == "csr_invalid"


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param((NameOID.ORGANIZATION_NAME, "Evil Corp"), id="organization"),
        pytest.param((NameOID.COMMON_NAME, "SN0000002"), id="cn-other-serial"),
        pytest.param((NameOID.COMMON_NAME, "*.example.com"), id="cn-wildcard"),
        pytest.param((NameOID.EMAIL_ADDRESS, "a@example.com"), id="email"),
        pytest.param((NameOID.COUNTRY_NAME, "US"), id="country"),
    ],
)
def test_csr_with_extra_subject_attributes_is_refused_as_csr_invalid(extra: tuple[x509.ObjectIdentifier, str]) -> None:
    name = subject((NameOID.SERIAL_NUMBER, SERIAL), extra)
    assert refusal(check_device_csr, make_csr(name=name)) == "csr_invalid"


def test_csr_with_common_name_equal_to_the_serial_is_accepted() -> None:
    name = subject((NameOID.COMMON_NAME, SERIAL), (NameOID.SERIAL_NUMBER, SERIAL))
    assert check_device_csr(make_csr(name=name)).facts.subject_serial == SERIAL


def test_csr_with_common_name_and_serial_in_one_multi_valued_rdn_is_accepted() -> None:
    name = x509.Name(
        [
            x509.RelativeDistinguishedName(
                [
                    x509.NameAttribute(NameOID.SERIAL_NUMBER, SERIAL),
                    x509.NameAttribute(NameOID.COMMON_NAME, SERIAL),
                ]
            )
        ]
    )
    assert check_device_csr(make_csr(name=name)).facts.subject_serial == SERIAL


def test_csr_without_serial_number_is_refused_as_serial_mismatch() -> None:
    assert refusal(check_device_csr, make_csr(name=subject((NameOID.COMMON_NAME, SERIAL)))) == "serial_mismatch"


def test_csr_with_empty_subject_is_refused_as_serial_mismatch() -> None:
    assert refusal(check_device_csr, make_csr(name=x509.Name([]))) == "serial_mismatch"


def test_csr_with_two_serial_numbers_is_refused_as_serial_mismatch() -> None:
    name = subject((NameOID.SERIAL_NUMBER, SERIAL), (NameOID.SERIAL_NUMBER, "SN0000002"))
    assert refusal(check_device_csr, make_csr(name=name)) == "serial_mismatch"


def with_extension_request(value: bytes) -> x509.CertificateSigningRequest:
    """A validly signed P-256 CSR whose extensionRequest attribute holds ``value`` (DER), built
    below cryptography's builder, which would refuse to write such a request."""
    key = ec.generate_private_key(ec.SECP256R1())
    template = make_csr(key, extensions=[x509.SubjectAlternativeName([x509.DNSName("a.example")])])
    cri, _ = decoder.decode(template.tbs_certrequest_bytes, asn1Spec=rfc2986.CertificationRequestInfo())
    (attribute,) = cri["attributes"]
    assert str(attribute["type"]) == "1.2.840.113549.1.9.14"
    attribute["values"][0] = value
    tbs = encoder.encode(cri)
    outer, _ = decoder.decode(der(template), asn1Spec=rfc2986.CertificationRequest())
    outer["certificationRequestInfo"] = cri
    outer["signature"] = univ.BitString.fromOctetString(key.sign(tbs, ec.ECDSA(hashes.SHA256())))
    csr = x509.load_der_x509_csr(encoder.encode(outer))
    assert csr.is_signature_valid
    return csr


def test_csr_with_a_duplicated_extension_is_refused_as_csr_invalid() -> None:
    san = make_csr(extensions=[x509.SubjectAlternativeName([x509.DNSName("a.example")])])
    cri, _ = decoder.decode(san.tbs_certrequest_bytes, asn1Spec=rfc2986.CertificationRequestInfo())
    extensions, _ = decoder.decode(cri["attributes"][0]["values"][0], asn1Spec=rfc5280.Extensions())
    extensions.append(extensions[0])
    assert refusal(check_device_csr, with_extension_request(encoder.encode(extensions))) == "csr_invalid"


def test_csr_with_an_empty_extension_request_is_accepted() -> None:
    assert check_device_csr(with_extension_request(b"\x30\x00")).facts.subject_serial == SERIAL


def test_csr_with_an_unparsable_extension_request_is_refused_as_csr_invalid() -> None:
    assert refusal(check_device_csr, with_extension_request(b"\x04\x03abc")) == "csr_invalid"


def test_csr_with_challenge_password_attribute_is_accepted() -> None:
    csr = make_csr(attributes=[(AttributeOID.CHALLENGE_PASSWORD, b"one-time-secret")])
    assert check_device_csr(csr).facts.subject_serial == SERIAL


def test_csr_with_unexpected_attribute_is_refused_as_csr_invalid() -> None:
    csr = make_csr(attributes=[(AttributeOID.UNSTRUCTURED_NAME, b"something")])
    assert refusal(check_device_csr, csr) == "csr_invalid"


def test_serial_in_the_csr_is_reported_as_written_for_the_policy_to_compare() -> None:
    # The CSR check does not judge the serial's form; the issuance policy compares it with the request.
    name = subject((NameOID.SERIAL_NUMBER, "other serial"))
    assert check_device_csr(make_csr(name=name)).facts.subject_serial == "other serial"
