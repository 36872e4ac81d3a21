"""CA keys in a PKCS#11 token (SoftHSM2) and in encrypted files, behind one KeyBackend interface.

The token is a real SoftHSM2 token in a private store; certificates and CRLs signed with its keys are
checked by cryptography and by OpenSSL.
"""

from __future__ import annotations

import re
import secrets
import stat
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pkcs11
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from pkcs11.constants import Attribute, ObjectClass
from pkcs11.exceptions import AttributeSensitive

from fabguard.domain.errors import ConfigurationError
from fabguard.domain.values import Serial
from fabguard.pki import profiles
from fabguard.pki.backends import FileKeyBackend, KeyBackend, KeyNotFound
from fabguard.pki.keys import new_signing_key
from fabguard.pki.pkcs11 import KeyNotExtractable, Pkcs11EcPrivateKey, Pkcs11KeyBackend
from tests.support import PIN_TOKEN, SOFTHSM_MODULE, TOKEN, USER_PIN, WRONG_PIN, SoftHsm, softhsm_available

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
ORG = "Acme Devices"
PASSPHRASE = b"correct horse battery staple"
PRIVATE_KEY_MARKER = b"PRIVATE KEY"

pytestmark = pytest.mark.skipif(not softhsm_available(), reason="SoftHSM2 is not installed (apt-get install softhsm2)")


@pytest.fixture
def backend(softhsm: SoftHsm) -> Iterator[Pkcs11KeyBackend]:
    with Pkcs11KeyBackend(softhsm.module, TOKEN, USER_PIN.encode()) as opened:
        yield opened


@pytest.fixture
def label() -> str:
    """A key label no other test uses: the token outlives each test."""
    return f"key-{secrets.token_hex(6)}"


def openssl_verify(tmp: Path, root: x509.Certificate, leaf: x509.Certificate, *untrusted: x509.Certificate) -> None:
    def pem(name: str, *certs: x509.Certificate) -> Path:
        path = tmp / name
        path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
        return path

    # The certificates are made for NOW, in the future: OpenSSL checks them at that time.
    command = ["openssl", "verify", "-attime", str(int(NOW.timestamp())), "-CAfile", str(pem("root.pem", root))]
    if untrusted:
        command += ["-untrusted", str(pem("untrusted.pem", *untrusted))]
    result = subprocess.run([*command, str(pem("leaf.pem", leaf))], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(": OK")


def files_with_private_key_marker(*roots: Path) -> list[Path]:
    return [
        path for root in roots for path in root.rglob("*") if path.is_file() and PRIVATE_KEY_MARKER in path.read_bytes()
    ]


# PKCS#11 backend: signing


def test_generated_key_signs_a_self_signed_root_that_verifies(
    backend: Pkcs11KeyBackend, label: str, tmp_path: Path
) -> None:
    key = backend.generate(label)
    assert isinstance(key, Pkcs11EcPrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    assert key.key_size == 256

    root = profiles.self_signed_root(key, ORG, "Acme HSM Root CA", NOW)

    root.certificate.verify_directly_issued_by(root.certificate)
    assert root.certificate.public_key() == key.public_key()
    openssl_verify(tmp_path, root.certificate, root.certificate)


def test_crl_signed_in_the_token_verifies(backend: Pkcs11KeyBackend, label: str) -> None:
    key = backend.generate(label)
    root = profiles.self_signed_root(key, ORG, "Acme HSM Root CA", NOW)
    revoked = x509.RevokedCertificateBuilder().serial_number(12345).revocation_date(NOW - timedelta(hours=1)).build()

    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(root.certificate.subject)
        .last_update(NOW)
        .next_update(NOW + timedelta(days=7))
        .add_revoked_certificate(revoked)
        .sign(key, hashes.SHA256())
    )

    assert crl.is_signature_valid(key.public_key())
    assert crl.get_revoked_certificate_by_serial_number(12345) is not None


def test_idevid_from_an_hsm_issuing_ca_verifies_with_openssl(
    backend: Pkcs11KeyBackend, label: str, tmp_path: Path
) -> None:
    root = profiles.self_signed_root(backend.generate(f"{label}-root"), ORG, "Acme HSM Root CA", NOW)
    issuing_key = backend.generate(f"{label}-issuing")
    issuing = profiles.Issuer(
        profiles.intermediate_ca(root, issuing_key.public_key(), ORG, "Acme HSM Issuing CA", NOW), issuing_key
    )
    device_key = new_signing_key()

    device = profiles.idevid_certificate(issuing, device_key.public_key(), Serial("SN-HSM-0001"), ORG, "widget", NOW)

    device.verify_directly_issued_by(issuing.certificate)
    openssl_verify(tmp_path, root.certificate, device, issuing.certificate)


@pytest.mark.parametrize("algorithm", [hashes.SHA256(), hashes.SHA384()], ids=["sha256", "sha384"])
def test_signature_uses_the_requested_hash(
    backend: Pkcs11KeyBackend, label: str, algorithm: hashes.HashAlgorithm
) -> None:
    key = backend.generate(label)
    data = b"checkpoint 42"

    signature = key.sign(data, ec.ECDSA(algorithm))

    key.public_key().verify(signature, data, ec.ECDSA(algorithm))
    other = hashes.SHA384() if isinstance(algorithm, hashes.SHA256) else hashes.SHA256()
    with pytest.raises(InvalidSignature):
        key.public_key().verify(signature, data, ec.ECDSA(other))


def test_a_prehashed_digest_is_signed_as_given(backend: Pkcs11KeyBackend, label: str) -> None:
    key = backend.generate(label)
    hasher = hashes.Hash(hashes.SHA256())
    hasher.update(b"payload")
    digest = hasher.finalize()

    signature = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))

    key.public_key().verify(signature, b"payload", ec.ECDSA(hashes.SHA256()))
    with pytest.raises(ValueError, match="32 bytes"):
        key.sign(digest[:20], ec.ECDSA(Prehashed(hashes.SHA256())))


def test_deterministic_ecdsa_is_refused_rather_than_silently_randomised(backend: Pkcs11KeyBackend, label: str) -> None:
    key = backend.generate(label)
    with pytest.raises(ValueError, match="deterministic"):
        key.sign(b"x", ec.ECDSA(hashes.SHA256(), deterministic_signing=True))


def test_concurrent_signing_from_16_threads_all_verify(backend: Pkcs11KeyBackend, label: str) -> None:
    key = backend.generate(label)
    public = key.public_key()
    start = threading.Barrier(16)

    def sign_batch(worker: int) -> list[tuple[bytes, bytes]]:
        start.wait()
        messages = [f"worker {worker} message {i}".encode() for i in range(25)]
        return [(m, key.sign(m, ec.ECDSA(hashes.SHA256()))) for m in messages]

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = [pair for batch in pool.map(sign_batch, range(16)) for pair in batch]

    assert len(results) == 400
    for message, signature in results:
        public.verify(signature, message, ec.ECDSA(hashes.SHA256()))


# PKCS#11 backend: finding keys


def test_a_new_backend_loads_the_key_by_label(softhsm: SoftHsm, backend: Pkcs11KeyBackend, label: str) -> None:
    generated = backend.generate(label)

    with Pkcs11KeyBackend(softhsm.module, TOKEN, USER_PIN.encode()) as other:
        assert other.exists(label)
        loaded = other.load(label)
        signature = loaded.sign(b"data", ec.ECDSA(hashes.SHA256()))

    assert loaded.public_key() == generated.public_key()
    generated.public_key().verify(signature, b"data", ec.ECDSA(hashes.SHA256()))


def test_missing_key_is_a_configuration_error_naming_key_and_token(backend: Pkcs11KeyBackend) -> None:
    assert not backend.exists("issuing-absent")
    with pytest.raises(ConfigurationError, match="no key 'issuing-absent' in token 'fabguard-test'") as missing:
        backend.load("issuing-absent")
    assert isinstance(missing.value, KeyNotFound)  # told apart from a token that fails


def test_generating_a_label_twice_is_refused(backend: Pkcs11KeyBackend, label: str) -> None:
    backend.generate(label)
    with pytest.raises(ConfigurationError, match="already exists"):
        backend.generate(label)


@pytest.mark.parametrize("name", ["", "../issuing", "a/b", ".hidden", "x" * 65])
def test_unsafe_key_names_are_refused_by_both_backends(backend: Pkcs11KeyBackend, tmp_path: Path, name: str) -> None:
    for each in (backend, FileKeyBackend(tmp_path / "keys", PASSPHRASE)):
        with pytest.raises(ConfigurationError, match="key name"):
            each.generate(name)


def test_closing_one_backend_leaves_the_others_logged_in(
    softhsm: SoftHsm, backend: Pkcs11KeyBackend, label: str
) -> None:
    key = backend.generate(label)
    second = Pkcs11KeyBackend(softhsm.module, TOKEN, USER_PIN.encode())
    key_of_second = second.load(label)
    second.close()

    signature = key.sign(b"still here", ec.ECDSA(hashes.SHA256()))
    key.public_key().verify(signature, b"still here", ec.ECDSA(hashes.SHA256()))
    # A key of a closed backend fails clearly, also from inside cryptography's builders.
    with pytest.raises(ConfigurationError, match="closed"):
        profiles.self_signed_root(key_of_second, ORG, "Acme HSM Root CA", NOW)


# PKCS#11 backend: the key stays in the token


def test_private_key_is_not_extractable(softhsm: SoftHsm, backend: Pkcs11KeyBackend, label: str) -> None:
    key = backend.generate(label)

    with pytest.raises(KeyNotExtractable, match="not extractable"):
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(KeyNotExtractable):
        key.private_numbers()
    with pytest.raises(KeyNotExtractable):
        key.exchange(ec.ECDH(), new_signing_key().public_key())

    # The token's own view, read directly (the backend's login covers this session). python-pkcs11
    # knows the module by the resolved path the backend loaded it under.
    token = pkcs11.lib(str(Path(softhsm.module).resolve())).get_token(token_label=TOKEN)
    with token.open() as session:
        stored = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label)
        assert stored[Attribute.EXTRACTABLE] is False
        assert stored[Attribute.SENSITIVE] is True
        assert stored[Attribute.NEVER_EXTRACTABLE] is True
        assert stored[Attribute.ALWAYS_SENSITIVE] is True
        assert stored[Attribute.TOKEN] is True
        assert stored[Attribute.SIGN] is True
        with pytest.raises(AttributeSensitive):
            stored[Attribute.VALUE]


def test_no_private_key_material_reaches_disk(
    softhsm: SoftHsm, backend: Pkcs11KeyBackend, label: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    root = profiles.self_signed_root(backend.generate(f"{label}-root"), ORG, "Acme HSM Root CA", NOW)
    issuing_key = backend.generate(f"{label}-issuing")
    issuing = profiles.Issuer(
        profiles.intermediate_ca(root, issuing_key.public_key(), ORG, "Acme HSM Issuing CA", NOW), issuing_key
    )
    for n in range(5):
        device = profiles.idevid_certificate(
            issuing, new_signing_key().public_key(), Serial(f"SN-DISK-{n}"), ORG, "widget", NOW
        )
        (work / f"device-{n}.pem").write_bytes(device.public_bytes(serialization.Encoding.PEM))

    assert files_with_private_key_marker(tmp_path, softhsm.directory) == []
    # The scan does find a key that is written out.
    leak = tmp_path / "control" / "leak.pem"
    leak.parent.mkdir()
    leak.write_bytes(
        new_signing_key().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    assert files_with_private_key_marker(tmp_path) == [leak]


# PKCS#11 backend: opening the token


def assert_no_pin_in(error: pytest.ExceptionInfo[ConfigurationError]) -> None:
    text = f"{error.value} {error.value!r} {error.value.to_dict()}"
    assert WRONG_PIN not in text
    assert USER_PIN not in text
    assert error.value.__cause__ is None


def test_wrong_pin_is_refused_by_the_token_without_showing_the_pin(softhsm: SoftHsm) -> None:
    with pytest.raises(ConfigurationError, match=f"wrong PIN for token '{PIN_TOKEN}'") as error:
        Pkcs11KeyBackend(softhsm.module, PIN_TOKEN, WRONG_PIN.encode())
    assert_no_pin_in(error)

    with Pkcs11KeyBackend(softhsm.module, PIN_TOKEN, USER_PIN.encode()) as opened:
        assert not opened.exists("anything")


def test_wrong_pin_is_refused_while_the_process_is_already_logged_in(
    softhsm: SoftHsm, backend: Pkcs11KeyBackend
) -> None:
    # The token itself would answer "already logged in" without checking this PIN.
    with pytest.raises(ConfigurationError, match=f"wrong PIN for token '{TOKEN}'") as error:
        Pkcs11KeyBackend(softhsm.module, TOKEN, WRONG_PIN.encode())
    assert_no_pin_in(error)


def test_missing_token_is_a_configuration_error(softhsm: SoftHsm) -> None:
    with pytest.raises(ConfigurationError, match="no token labelled 'no-such-token'") as error:
        Pkcs11KeyBackend(softhsm.module, "no-such-token", USER_PIN.encode())
    assert_no_pin_in(error)


def test_missing_module_is_a_configuration_error(tmp_path: Path) -> None:
    module = tmp_path / "libabsent.so"
    with pytest.raises(ConfigurationError, match=re.escape(f"PKCS#11 module {module} does not exist")) as error:
        Pkcs11KeyBackend(str(module), TOKEN, USER_PIN.encode())
    assert_no_pin_in(error)


def test_describe_names_token_and_module_but_not_the_pin(backend: Pkcs11KeyBackend) -> None:
    text = f"{backend.describe()} {backend!r}"
    assert TOKEN in text
    assert SOFTHSM_MODULE in text
    assert USER_PIN not in text


# Both backends


def test_both_backends_satisfy_the_key_backend_protocol(backend: Pkcs11KeyBackend, tmp_path: Path) -> None:
    backends: list[KeyBackend] = [backend, FileKeyBackend(tmp_path, PASSPHRASE)]
    assert all(isinstance(each, KeyBackend) for each in backends)


# File backend


def test_file_backend_round_trip(tmp_path: Path) -> None:
    keys = FileKeyBackend(tmp_path / "keys", PASSPHRASE)
    assert not keys.exists("issuing")

    generated = keys.generate("issuing")

    assert keys.exists("issuing")
    loaded = keys.load("issuing")
    assert loaded.private_numbers() == generated.private_numbers()
    assert isinstance(loaded.curve, ec.SECP256R1)
    assert str(tmp_path / "keys") in keys.describe()


def test_file_backend_writes_encrypted_pkcs8_readable_by_the_owner_only(tmp_path: Path) -> None:
    keys = FileKeyBackend(tmp_path / "keys", PASSPHRASE)
    keys.generate("root")

    path = tmp_path / "keys" / "root.key.pem"
    assert path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_file_backend_wrong_passphrase_is_a_configuration_error(tmp_path: Path) -> None:
    FileKeyBackend(tmp_path, PASSPHRASE).generate("issuing")
    with pytest.raises(ConfigurationError, match="wrong key passphrase"):
        FileKeyBackend(tmp_path, b"not the passphrase at all").load("issuing")


def test_file_backend_missing_key_and_second_generation_are_refused(tmp_path: Path) -> None:
    keys = FileKeyBackend(tmp_path, PASSPHRASE)
    with pytest.raises(ConfigurationError, match="no key 'issuing'"):
        keys.load("issuing")
    keys.generate("issuing")
    with pytest.raises(ConfigurationError, match="already exists"):
        keys.generate("issuing")
