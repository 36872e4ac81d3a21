"""``provision --pkcs11-module``: the unit's key pair is made in its token (SoftHSM2 standing for the secure
element), the CSR signed there, and the private key never leaves it: not extractable, sensitive, and an
export attempt fails. The same key answers a field challenge, signed in the token too."""

from __future__ import annotations

import random
from pathlib import Path

import pkcs11
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pkcs11.constants import Attribute, ObjectClass
from pkcs11.exceptions import AttributeSensitive, KeyNotWrappable, MechanismInvalid, PKCS11Error
from pkcs11.mechanisms import KeyType
from pkcs11.util.ec import encode_ec_public_key

from fabguard.fixture.openhtf_records import openhtf_record
from fabguard.service.access import tokens
from fabguard_station.token_keys import KeyNotExtractable, token_session, unit_key
from tests.station.conftest import Station
from tests.support import TOKEN, USER_PIN, SoftHsm, World


def test_the_unit_key_is_made_in_the_token_and_never_leaves_it(
    world: World, station: Station, softhsm: SoftHsm, tmp_path: Path
) -> None:
    order = world.order(quota=2)
    serial = "SN-HSM-0001"
    label = "unit-SN-HSM-0001"
    assert station.enroll(world, "fx-hsm").code == 0
    world.fixture("fx-hsm-uploader").upload_test_record(openhtf_record(serial, "fx", fail=False, rng=random.Random(1)))
    hsm = ["--pkcs11-module", softhsm.module, "--token", TOKEN, "--key-label", label]
    pin = {"FABGUARD_PKCS11_PIN": USER_PIN}

    done = station.run("provision", "--order", order, "--serial", serial, *hsm, "--out", tmp_path, "--json", env=pin)

    assert done.code == 0, done.stdout + done.stderr
    assert done.json["key_created"] is True
    cert = x509.load_pem_x509_certificate(Path(done.json["certificate"]).read_bytes())
    csr = x509.load_pem_x509_csr(Path(done.json["csr"]).read_bytes())
    assert csr.is_signature_valid
    with (
        pkcs11.lib(str(Path(softhsm.module).resolve())).get_token(token_label=TOKEN).open(user_pin=USER_PIN) as session
    ):
        private = session.get_key(object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC, label=label)
        public = session.get_key(object_class=ObjectClass.PUBLIC_KEY, key_type=KeyType.EC, label=label)
        # The certificate is for the token's key.
        token_public = serialization.load_der_public_key(encode_ec_public_key(public))
        assert cert.public_key() == token_public == csr.public_key()
        # Never extractable, sensitive, made in the token; its value cannot be read or wrapped out.
        assert private[Attribute.EXTRACTABLE] is False
        assert private[Attribute.SENSITIVE] is True
        assert private[Attribute.NEVER_EXTRACTABLE] is True
        assert private[Attribute.ALWAYS_SENSITIVE] is True
        assert private[Attribute.LOCAL] is True
        with pytest.raises(AttributeSensitive):
            private[Attribute.VALUE]
        wrapping = session.generate_key(KeyType.AES, 256, template={Attribute.WRAP: True, Attribute.TOKEN: False})
        with pytest.raises((KeyNotWrappable, MechanismInvalid, PKCS11Error)):
            wrapping.wrap_key(private)
        # The station's own key object refuses too.
        key = unit_key(session, label, create=False)
        with pytest.raises(KeyNotExtractable):
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        with pytest.raises(KeyNotExtractable):
            key.private_numbers()

    # A retried step finds the key its first attempt made, and gets the same certificate.
    again = station.run("provision", "--order", order, "--serial", serial, *hsm, "--out", tmp_path, "--json", env=pin)
    assert again.code == 0 and again.json["key_created"] is False and again.json["replayed"] is True

    # The same key answers a field challenge, signed in the token.
    _, secret = tokens.create_token(world.inst, name="desk", role="field", actor="test")
    with world.admin() as http:
        http.headers["Authorization"] = f"Bearer {secret}"
        nonce = http.post("/api/v1/field/challenge").json()["nonce"]
        answer = station.run(
            "field", "answer", "--nonce", nonce, "--chain", done.json["certificate"], *hsm, "--json", env=pin
        )
        assert answer.code == 0, answer.stdout + answer.stderr
        verdict = http.post("/api/v1/field/verify", json=answer.json["answer"]).json()
    assert verdict["genuine"] is True and verdict["serial"] == serial


def test_a_wrong_pin_or_token_is_a_station_error(
    station: Station, world: World, softhsm: SoftHsm, tmp_path: Path
) -> None:
    assert station.enroll(world, "fx-hsm").code == 0
    args = ["provision", "--order", "po", "--serial", "SN-HSM-2", "--pkcs11-module", softhsm.module, "--out", tmp_path]
    wrong = station.run(*args, "--token", TOKEN, "--json", env={"FABGUARD_PKCS11_PIN": "0000-wrong"})
    assert wrong.code == 5 and wrong.json["error"]["code"] == "pkcs11_error" and "0000" not in wrong.stdout
    absent = station.run(*args, "--token", "no-such-token", "--json", env={"FABGUARD_PKCS11_PIN": USER_PIN})
    assert absent.code == 5 and "no-such-token" in absent.json["error"]["message"]


def test_token_session_opens_the_fixture_token(softhsm: SoftHsm) -> None:
    with token_session(softhsm.module, TOKEN, USER_PIN) as session:
        key = unit_key(session, "unit-session-check")
        assert key.created and key.key_size == 256
