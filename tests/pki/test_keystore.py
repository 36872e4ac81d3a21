"""An instance's KeyStore: key references to encrypted files and to HSM keys, made and loaded by name."""

from __future__ import annotations

import secrets
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from fabguard.domain.errors import ConfigurationError
from fabguard.pki.keys import write_encrypted_key
from fabguard.pki.keystore import KeyStore
from tests.support import TOKEN, USER_PIN, SoftHsm, softhsm_available

ENV = {"FABGUARD_KEY_PASSPHRASE": "correct horse battery staple"}


def test_a_new_file_key_is_an_encrypted_owner_only_file_named_by_its_reference(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "keys", env=ENV)
    ref = keys.generate("issuing-2030")
    assert ref == keys.ref_for("issuing-2030") == "file:issuing-2030"
    path = keys.path("issuing-2030")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
    assert isinstance(keys.load(ref), ec.EllipticCurvePrivateKey)


def test_a_loaded_key_is_decrypted_once_and_then_served_from_memory(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path, env=ENV)
    ref = keys.generate("issuing")
    first = keys.load(ref)
    keys.path("issuing").unlink()
    assert keys.load(ref) is first


def test_the_ed25519_ledger_key_loads_from_its_file(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path, env=ENV)
    write_encrypted_key(ed25519.Ed25519PrivateKey.generate(), keys.path("ledger"), keys.passphrase())
    assert isinstance(keys.load("file:ledger"), ed25519.Ed25519PrivateKey)


def test_making_a_key_twice_is_refused(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path, env=ENV)
    keys.generate("issuing")
    with pytest.raises(ConfigurationError, match="already exists"):
        keys.generate("issuing")


def test_a_wrong_passphrase_or_none_is_a_configuration_error(tmp_path: Path) -> None:
    KeyStore(tmp_path, env=ENV).generate("issuing")
    with pytest.raises(ConfigurationError, match="wrong key passphrase"):
        KeyStore(tmp_path, env={"FABGUARD_KEY_PASSPHRASE": "not the passphrase at all"}).load("file:issuing")
    with pytest.raises(ConfigurationError, match="no key passphrase"):
        KeyStore(tmp_path, env={}).load("file:issuing")


def test_unknown_backends_and_references_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="unknown key backend"):
        KeyStore(tmp_path, backend="tpm", env=ENV)
    with pytest.raises(ConfigurationError, match="unknown key reference"):
        KeyStore(tmp_path, env=ENV).load("tpm:issuing")


def test_an_hsm_reference_without_a_module_and_token_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no PKCS#11 module and token"):
        KeyStore(tmp_path, env=ENV).load("pkcs11:fabguard-issuing")


@pytest.mark.skipif(not softhsm_available(), reason="SoftHSM2 is not installed (apt-get install softhsm2)")
def test_hsm_keys_are_labelled_with_the_prefix_and_found_again_after_close(tmp_path: Path, softhsm: SoftHsm) -> None:
    prefix = secrets.token_hex(4)
    env = {**ENV, "FABGUARD_PKCS11_PIN": USER_PIN}
    keys = KeyStore(
        tmp_path, backend="pkcs11", pkcs11_module=softhsm.module, pkcs11_token=TOKEN, label_prefix=prefix, env=env
    )
    ref = keys.generate("issuing")
    assert ref == f"pkcs11:{prefix}-issuing"
    public = keys.load(ref).public_key()
    assert not list(tmp_path.iterdir())  # nothing of an HSM key is written to the keys directory
    keys.close()
    assert keys.load(ref).public_key() == public
    keys.close()


def test_a_destroyed_file_key_is_gone(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path, env=ENV)
    ref = keys.generate("ocsp-issuing-1")
    keys.load(ref)
    keys.destroy(ref)
    assert not keys.path("ocsp-issuing-1").exists()
    with pytest.raises(ConfigurationError):
        keys.load(ref)
    keys.destroy(ref)  # nothing left: nothing to do


@pytest.mark.skipif(not softhsm_available(), reason="SoftHSM2 is not installed (apt-get install softhsm2)")
def test_a_destroyed_hsm_key_is_gone_from_the_token(tmp_path: Path, softhsm: SoftHsm) -> None:
    env = {**ENV, "FABGUARD_PKCS11_PIN": USER_PIN}
    keys = KeyStore(
        tmp_path, backend="pkcs11", pkcs11_module=softhsm.module, pkcs11_token=TOKEN,
        label_prefix=secrets.token_hex(4), env=env,
    )  # fmt: skip
    ref = keys.generate("ocsp-root-1")
    keys.load(ref)
    keys.destroy(ref)
    keys.close()
    with pytest.raises(ConfigurationError):
        keys.load(ref)
    keys.close()


def test_a_secret_is_made_once_encrypted_and_read_the_same_by_every_store_of_the_instance(tmp_path: Path) -> None:
    """The field nonces' MAC key (ADR 0015): one per instance, whichever process makes it first."""
    first, second = KeyStore(tmp_path / "keys", env=ENV), KeyStore(tmp_path / "keys", env=ENV)
    secret = first.secret("field-nonce")
    assert len(secret) == 32 and second.secret("field-nonce") == secret
    assert first.secret("another") != secret
    path = first.path("field-nonce")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
    assert secret not in path.read_bytes()
    assert sorted(p.name for p in path.parent.iterdir()) == ["another.key.pem", "field-nonce.key.pem"]
    with pytest.raises(ConfigurationError):
        KeyStore(tmp_path / "keys", env={"FABGUARD_KEY_PASSPHRASE": "not the passphrase at all"}).secret("field-nonce")
