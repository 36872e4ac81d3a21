"""Certificate profiles (root, intermediate, IDevID, fixture, server) and private keys at rest."""

from __future__ import annotations

import ipaddress
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fabguard.domain.errors import ConfigurationError
from fabguard.domain.values import Serial
from fabguard.pki import profiles
from fabguard.pki.keys import (
    MIN_PASSPHRASE,
    PASSPHRASE_ENV,
    PASSPHRASE_FILE_ENV,
    new_signing_key,
    passphrase_from_env,
    read_encrypted_key,
    write_encrypted_key,
)

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
ORG = "Acme Devices"
PASSPHRASE = b"correct horse battery staple"


@pytest.fixture(scope="module")
def root() -> profiles.Issuer:
    return profiles.self_signed_root(new_signing_key(), ORG, "Acme Root CA", NOW)


@pytest.fixture(scope="module")
def issuing(root: profiles.Issuer) -> profiles.Issuer:
    key = new_signing_key()
    return profiles.Issuer(profiles.intermediate_ca(root, key.public_key(), ORG, "Acme Issuing CA", NOW), key)


def ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(kind)


def key_usage(cert: x509.Certificate) -> set[str]:
    ku = ext(cert, x509.KeyUsage).value
    assert isinstance(ku, x509.KeyUsage)
    names = [
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
    ]
    return {n for n in names if getattr(ku, n)}


def ski_digest(cert: x509.Certificate) -> bytes:
    value = ext(cert, x509.SubjectKeyIdentifier).value
    assert isinstance(value, x509.SubjectKeyIdentifier)
    return value.digest


def aki_key_id(cert: x509.Certificate) -> bytes | None:
    value = ext(cert, x509.AuthorityKeyIdentifier).value
    assert isinstance(value, x509.AuthorityKeyIdentifier)
    return value.key_identifier


def device(
    issuer: profiles.Issuer, lifetime: timedelta | None = None
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = profiles.idevid_certificate(issuer, key.public_key(), Serial("SN0000001"), ORG, "sensor", NOW, lifetime)
    return key, cert


# ------------------------------------------------------------------ IDevID
def test_idevid_names_the_unit_serial_in_the_subject(issuing: profiles.Issuer) -> None:
    _, cert = device(issuing)
    subject = cert.subject
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)] == ["SN0000001"]
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == ["sensor"]
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [ORG]
    assert cert.issuer == issuing.certificate.subject


def test_idevid_certifies_the_device_key_and_is_signed_by_the_issuer(issuing: profiles.Issuer) -> None:
    key, cert = device(issuing)
    assert cert.public_key() == key.public_key()
    cert.verify_directly_issued_by(issuing.certificate)


def test_idevid_key_usage_is_critical_digital_signature_only(issuing: profiles.Issuer) -> None:
    _, cert = device(issuing)
    assert ext(cert, x509.KeyUsage).critical
    assert key_usage(cert) == {"digital_signature"}


def test_idevid_is_not_a_ca_and_says_so_critically(issuing: profiles.Issuer) -> None:
    _, cert = device(issuing)
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical
    assert bc.value == x509.BasicConstraints(ca=False, path_length=None)


def test_idevid_key_identifiers_link_device_key_and_issuer(issuing: profiles.Issuer) -> None:
    key, cert = device(issuing)
    assert ski_digest(cert) == x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest
    assert aki_key_id(cert) == ski_digest(issuing.certificate)
    assert not ext(cert, x509.SubjectKeyIdentifier).critical
    assert not ext(cert, x509.AuthorityKeyIdentifier).critical


def test_idevid_has_exactly_the_profile_extensions(issuing: profiles.Issuer) -> None:
    _, cert = device(issuing)
    assert {type(e.value) for e in cert.extensions} == {
        x509.BasicConstraints,
        x509.KeyUsage,
        x509.SubjectKeyIdentifier,
        x509.AuthorityKeyIdentifier,
    }


def test_idevid_never_expires_by_default(issuing: profiles.Issuer) -> None:
    _, cert = device(issuing)
    assert cert.not_valid_after_utc == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert cert.not_valid_after_utc == profiles.NO_WELL_DEFINED_EXPIRY


def test_idevid_is_backdated_for_clock_skew(issuing: profiles.Issuer) -> None:
    _, cert = device(issuing)
    assert cert.not_valid_before_utc == NOW - profiles.BACKDATE


def test_idevid_lifetime_is_honoured(issuing: profiles.Issuer) -> None:
    _, cert = device(issuing, lifetime=timedelta(days=3650))
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=3650)


def test_idevid_naive_now_is_taken_as_utc(issuing: profiles.Issuer) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    naive = NOW.replace(tzinfo=None)
    cert = profiles.idevid_certificate(issuing, key.public_key(), Serial("SN1"), ORG, "sensor", naive)
    assert cert.not_valid_before_utc == NOW - profiles.BACKDATE


def test_idevid_of_other_time_zone_is_converted_to_utc(issuing: profiles.Issuer) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    local = NOW.astimezone(timezone(timedelta(hours=9)))
    cert = profiles.idevid_certificate(issuing, key.public_key(), Serial("SN1"), ORG, "sensor", local)
    assert cert.not_valid_before_utc == NOW - profiles.BACKDATE


@pytest.mark.parametrize(
    "device_key",
    [ec.generate_private_key(ec.SECP384R1()), ed25519.Ed25519PrivateKey.generate()],
    ids=["p384", "ed25519"],
)
def test_idevid_certifies_other_allowed_key_types(
    issuing: profiles.Issuer, device_key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
) -> None:
    cert = profiles.idevid_certificate(issuing, device_key.public_key(), Serial("SN1"), ORG, "sensor", NOW)
    assert cert.public_key() == device_key.public_key()
    cert.verify_directly_issued_by(issuing.certificate)


def test_idevid_serial_numbers_are_unique_and_positive(issuing: profiles.Issuer) -> None:
    serials = {device(issuing)[1].serial_number for _ in range(20)}
    assert len(serials) == 20
    assert all(s > 0 for s in serials)


def test_ed25519_issuer_signs_an_idevid() -> None:
    root_key = ed25519.Ed25519PrivateKey.generate()
    root = profiles.self_signed_root(root_key, ORG, "Ed Root", NOW)
    _, cert = device(root)
    cert.verify_directly_issued_by(root.certificate)
    assert cert.signature_hash_algorithm is None


# ------------------------------------------------------------------ CAs
def test_root_is_a_self_signed_ca_without_path_length(root: profiles.Issuer) -> None:
    cert = root.certificate
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical
    assert bc.value == x509.BasicConstraints(ca=True, path_length=None)


@pytest.mark.parametrize("which", ["root", "issuing"])
def test_ca_key_usage_is_critical_cert_and_crl_signing_only(
    which: str, root: profiles.Issuer, issuing: profiles.Issuer
) -> None:
    cert = {"root": root, "issuing": issuing}[which].certificate
    assert ext(cert, x509.KeyUsage).critical
    assert key_usage(cert) == {"key_cert_sign", "crl_sign"}


def test_intermediate_is_a_ca_limited_to_end_entities(root: profiles.Issuer, issuing: profiles.Issuer) -> None:
    cert = issuing.certificate
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical
    assert bc.value == x509.BasicConstraints(ca=True, path_length=0)
    cert.verify_directly_issued_by(root.certificate)
    assert cert.issuer == root.certificate.subject


def test_intermediate_key_identifiers_chain_to_the_root(root: profiles.Issuer, issuing: profiles.Issuer) -> None:
    assert aki_key_id(issuing.certificate) == ski_digest(root.certificate)
    assert ski_digest(issuing.certificate) == (
        x509.SubjectKeyIdentifier.from_public_key(issuing.key.public_key()).digest
    )


def test_ca_validity_is_backdated_and_measured_in_years(root: profiles.Issuer) -> None:
    cert = root.certificate
    assert cert.not_valid_before_utc == NOW - profiles.BACKDATE
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=365 * 25)


def test_intermediate_never_outlives_its_parent() -> None:
    short_root = profiles.self_signed_root(new_signing_key(), ORG, "Short Root", NOW, years=2)
    cert = profiles.intermediate_ca(short_root, new_signing_key().public_key(), ORG, "Issuing", NOW, years=15)
    assert cert.not_valid_after_utc == short_root.certificate.not_valid_after_utc


# ------------------------------------------------------------------ fixture and server
def test_fixture_certificate_is_for_tls_client_authentication_only(root: profiles.Issuer) -> None:
    station_key = new_signing_key()
    station = profiles.Issuer(
        profiles.intermediate_ca(root, station_key.public_key(), ORG, "Station CA", NOW), station_key
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = profiles.fixture_certificate(station, key.public_key(), ORG, "fx-1", "cm-a", NOW, days=30)
    eku = ext(cert, x509.ExtendedKeyUsage).value
    assert isinstance(eku, x509.ExtendedKeyUsage)
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert key_usage(cert) == {"digital_signature"}
    assert ext(cert, x509.BasicConstraints).value == x509.BasicConstraints(ca=False, path_length=None)
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == ["fx-1"]
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)] == ["cm-a"]
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=30)
    assert aki_key_id(cert) == ski_digest(station.certificate)
    cert.verify_directly_issued_by(station.certificate)


def test_server_certificate_names_dns_names_and_ip_addresses(root: profiles.Issuer) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = profiles.server_certificate(root, key.public_key(), ORG, ["fabguard.example", "127.0.0.1", "::1"], NOW)
    san = ext(cert, x509.SubjectAlternativeName).value
    assert isinstance(san, x509.SubjectAlternativeName)
    assert san.get_values_for_type(x509.DNSName) == ["fabguard.example"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    eku = ext(cert, x509.ExtendedKeyUsage).value
    assert isinstance(eku, x509.ExtendedKeyUsage)
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]


# ------------------------------------------------------------------ keys at rest
@pytest.mark.parametrize("make", [new_signing_key, ed25519.Ed25519PrivateKey.generate], ids=["p256", "ed25519"])
def test_encrypted_key_round_trips(tmp_path: Path, make: object) -> None:
    key = make()  # type: ignore[operator]
    path = tmp_path / "keys" / "issuing.key.pem"
    write_encrypted_key(key, path, PASSPHRASE)
    loaded = read_encrypted_key(path, PASSPHRASE)
    raw = serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    assert loaded.private_bytes(*raw) == key.private_bytes(*raw)


def test_key_file_is_encrypted_pkcs8_pem_readable_by_the_owner_only(tmp_path: Path) -> None:
    key = new_signing_key()
    path = tmp_path / "k.pem"
    write_encrypted_key(key, path, PASSPHRASE)
    text = path.read_text()
    assert text.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    assert text.rstrip().endswith("-----END ENCRYPTED PRIVATE KEY-----")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # Nothing of the private scalar appears in the clear.
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    assert scalar not in path.read_bytes()
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(path.read_bytes(), password=None)


def test_overwriting_a_world_readable_key_file_leaves_it_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    path.write_text("old")
    path.chmod(0o644)
    write_encrypted_key(new_signing_key(), path, PASSPHRASE)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_wrong_passphrase_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    write_encrypted_key(new_signing_key(), path, PASSPHRASE)
    with pytest.raises(ConfigurationError) as info:
        read_encrypted_key(path, b"not the right passphrase")
    assert "passphrase" in info.value.message
    assert info.value.status == 500


def test_missing_key_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        read_encrypted_key(tmp_path / "absent.pem", PASSPHRASE)


def test_plaintext_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.pem"
    path.write_bytes(
        new_signing_key().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(ConfigurationError):
        read_encrypted_key(path, PASSPHRASE)


def test_key_file_of_a_type_fabguard_does_not_sign_with_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rsa.pem"
    write_encrypted_key(rsa.generate_private_key(public_exponent=65537, key_size=2048), path, PASSPHRASE)
    with pytest.raises(ConfigurationError) as info:
        read_encrypted_key(path, PASSPHRASE)
    assert "key type" in info.value.message


# ------------------------------------------------------------------ the passphrase
def test_passphrase_is_read_from_the_environment_variable() -> None:
    assert passphrase_from_env({PASSPHRASE_ENV: "long-enough-passphrase"}) == b"long-enough-passphrase"


def test_passphrase_is_read_from_the_named_file_without_its_newline(tmp_path: Path) -> None:
    f = tmp_path / "passphrase"
    f.write_text("from-a-file-passphrase\n")
    assert passphrase_from_env({PASSPHRASE_FILE_ENV: str(f)}) == b"from-a-file-passphrase"


def test_environment_variable_wins_over_the_file(tmp_path: Path) -> None:
    f = tmp_path / "passphrase"
    f.write_text("from-a-file-passphrase")
    env = {PASSPHRASE_ENV: "from-the-environment", PASSPHRASE_FILE_ENV: str(f)}
    assert passphrase_from_env(env) == b"from-the-environment"


def test_missing_passphrase_is_a_configuration_error_naming_both_variables() -> None:
    with pytest.raises(ConfigurationError) as info:
        passphrase_from_env({})
    assert PASSPHRASE_ENV in info.value.message
    assert PASSPHRASE_FILE_ENV in info.value.message


def test_unreadable_passphrase_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        passphrase_from_env({PASSPHRASE_FILE_ENV: str(tmp_path / "absent")})
    assert "absent" in info.value.message


def test_empty_passphrase_file_is_a_configuration_error(tmp_path: Path) -> None:
    f = tmp_path / "passphrase"
    f.write_text("\n")
    with pytest.raises(ConfigurationError):
        passphrase_from_env({PASSPHRASE_FILE_ENV: str(f)})


def test_passphrase_shorter_than_the_minimum_is_refused() -> None:
    assert passphrase_from_env({PASSPHRASE_ENV: "x" * MIN_PASSPHRASE}) == b"x" * MIN_PASSPHRASE
    with pytest.raises(ConfigurationError) as info:
        passphrase_from_env({PASSPHRASE_ENV: "x" * (MIN_PASSPHRASE - 1)})
    assert str(MIN_PASSPHRASE) in info.value.message


def test_short_passphrase_in_a_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "passphrase"
    f.write_text("short\n")
    with pytest.raises(ConfigurationError):
        passphrase_from_env({PASSPHRASE_FILE_ENV: str(f)})
