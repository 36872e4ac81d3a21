"""The firmware envelope, pure: round trips through the device's independent opener, and every tamper caught."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import uuid
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from fabguard.domain.errors import FabGuardError
from fabguard.firmware import envelope
from fabguard.firmware.policy import (
    FirmwareRefusal,
    ReleaseState,
    UnitReleaseFacts,
    authorize_unit_release,
    order_found,
    release_found,
)
from fabguard.firmware.sbom import InvalidSbom, firmware_sbom, validate_sbom
from fabguard.fixture import firmware as device_side

RELEASE = "fw_0123456789abcdef"
SERIAL = "SN-0001"


def make_package(
    image: bytes, unit_key: ec.EllipticCurvePublicKey, signer: envelope.ManifestSigningKey, serial: str = SERIAL
) -> bytes:
    sealed = envelope.seal_image(image, RELEASE)
    manifest = envelope.canonical_json(
        {
            "format": envelope.MANIFEST_FORMAT,
            "release_id": RELEASE,
            "product_id": "sensor",
            "version": "1.2.3",
            "size": len(image),
            "sha256": hashlib.sha256(image).hexdigest(),
            "image_nonce": base64.b64encode(sealed.nonce).decode(),
            "ciphertext_sha256": hashlib.sha256(sealed.ciphertext).hexdigest(),
        }
    )
    wrap = envelope.wrap_to_unit(
        sealed.data_key, unit_key, serial=serial, release_id=RELEASE, manifest_sha256=hashlib.sha256(manifest).digest()
    )
    return envelope.encode_package(manifest, envelope.sign_manifest(signer, manifest), wrap, sealed.ciphertext)


@pytest.fixture(params=["p256", "ed25519"])
def signer(request: pytest.FixtureRequest) -> envelope.ManifestSigningKey:
    if request.param == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def test_the_device_opens_its_package_and_gets_the_original_bytes(signer: envelope.ManifestSigningKey) -> None:
    device = ec.generate_private_key(ec.SECP256R1())
    image = bytes(range(256)) * 40 + b"tail"
    opened = device_side.open_package(
        make_package(image, device.public_key(), signer),
        device_key=device,
        serial=SERIAL,
        firmware_key=signer.public_key(),
    )
    assert opened.image == image
    assert opened.release_id == RELEASE and opened.version == "1.2.3"


def test_another_units_key_cannot_open_the_package() -> None:
    signer, device, other = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    package = make_package(b"secret firmware", device.public_key(), signer)
    with pytest.raises(device_side.NotForThisDevice):
        device_side.open_package(package, device_key=other, serial=SERIAL, firmware_key=signer.public_key())


def test_the_package_is_bound_to_the_serial_it_was_wrapped_for() -> None:
    signer, device = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    package = make_package(b"secret firmware", device.public_key(), signer)
    with pytest.raises(device_side.NotForThisDevice):
        device_side.open_package(package, device_key=device, serial="SN-0002", firmware_key=signer.public_key())


def test_a_manifest_signed_by_another_key_is_rejected() -> None:
    signer, impostor, device = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    package = make_package(b"firmware", device.public_key(), impostor)
    with pytest.raises(device_side.ManifestSignatureInvalid):
        device_side.open_package(package, device_key=device, serial=SERIAL, firmware_key=signer.public_key())


def test_every_flipped_byte_anywhere_in_the_package_is_rejected() -> None:
    signer, device = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    package = make_package(b"\x5a" * 300, device.public_key(), signer)
    for i in range(len(package)):
        for bit in (0x01, 0x80):
            bad = bytearray(package)
            bad[i] ^= bit
            with pytest.raises(device_side.FirmwarePackageError):
                device_side.open_package(bytes(bad), device_key=device, serial=SERIAL, firmware_key=signer.public_key())


def test_truncated_or_extended_packages_are_malformed() -> None:
    signer, device = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    package = make_package(b"firmware", device.public_key(), signer)
    for bad in (package[:-1], package + b"\x00", package[:20], b"", b"FGFWPKG2" + package[8:]):
        with pytest.raises(device_side.PackageMalformed):
            device_side.parse_package(bad)


def test_ecies_wrap_round_trips_in_the_servers_own_code_too() -> None:
    device = ec.generate_private_key(ec.SECP256R1())
    digest = hashlib.sha256(b"manifest").digest()
    wrap = envelope.wrap_to_unit(
        b"k" * 32, device.public_key(), serial=SERIAL, release_id=RELEASE, manifest_sha256=digest
    )
    assert (
        envelope.unwrap_for_unit(wrap, device, serial=SERIAL, release_id=RELEASE, manifest_sha256=digest) == b"k" * 32
    )
    with pytest.raises(envelope.EnvelopeError):
        envelope.unwrap_for_unit(wrap, device, serial=SERIAL, release_id="fw_other", manifest_sha256=digest)
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(envelope.EnvelopeError, match="P-256"):
        envelope.wrap_to_unit(b"k" * 32, p384.public_key(), serial=SERIAL, release_id=RELEASE, manifest_sha256=digest)


def test_at_rest_image_and_data_key_are_bound_to_their_release() -> None:
    kek = envelope.new_kek()
    sealed = envelope.seal_image(b"image bytes", RELEASE)
    assert b"image bytes" not in sealed.ciphertext
    nonce, wrapped = envelope.wrap_data_key(kek, sealed.data_key, RELEASE)
    data_key = envelope.unwrap_data_key(kek, nonce, wrapped, RELEASE)
    assert envelope.open_image(data_key, sealed.nonce, sealed.ciphertext, RELEASE) == b"image bytes"
    with pytest.raises(envelope.EnvelopeError):
        envelope.unwrap_data_key(kek, nonce, wrapped, "fw_swapped")
    with pytest.raises(envelope.EnvelopeError):
        envelope.unwrap_data_key(envelope.new_kek(), nonce, wrapped, RELEASE)
    with pytest.raises(envelope.EnvelopeError):
        envelope.open_image(data_key, sealed.nonce, sealed.ciphertext, "fw_swapped")
    flipped = bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:]
    with pytest.raises(envelope.EnvelopeError):
        envelope.open_image(data_key, sealed.nonce, flipped, RELEASE)


def test_the_kek_file_opens_only_with_the_passphrase_and_unaltered() -> None:
    kek = envelope.new_kek()
    sealed = envelope.seal_kek(kek, b"correct horse battery")
    assert kek not in sealed and kek.hex().encode() not in sealed
    assert envelope.open_kek(sealed, b"correct horse battery") == kek
    with pytest.raises(envelope.EnvelopeError, match="passphrase"):
        envelope.open_kek(sealed, b"wrong horse battery")
    tampered = sealed.replace(b'"ciphertext": "', b'"ciphertext": "A', 1)
    with pytest.raises(envelope.EnvelopeError):
        envelope.open_kek(tampered, b"correct horse battery")
    with pytest.raises(envelope.EnvelopeError):
        envelope.open_kek(b"not json", b"correct horse battery")


def test_sbom_is_cyclonedx_1_6_valid_against_the_schema_and_the_validator_catches_breakage() -> None:
    doc = firmware_sbom(
        product_id="sensor",
        version="1.2.3",
        sha256="ab" * 32,
        size=10,
        release_id=RELEASE,
        supplier="Acme",
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        serial_number=uuid.UUID(int=1),
    )
    validate_sbom(doc)
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.6"
    assert doc["serialNumber"] == f"urn:uuid:{uuid.UUID(int=1)}"
    assert doc["metadata"]["component"]["hashes"] == [{"alg": "SHA-256", "content": "ab" * 32}]
    assert doc["metadata"]["tools"]["components"][0]["name"] == "fabguard"
    assert doc["dependencies"][0] == {"ref": "firmware:sensor@1.2.3", "dependsOn": ["firmware:sensor@1.2.3#image"]}
    for key, value in (("bomFormat", "SPDX"), ("specVersion", "0.9"), ("serialNumber", "42"), ("version", 0)):
        with pytest.raises(InvalidSbom):
            validate_sbom({**doc, key: value})
    broken = json.loads(json.dumps(doc))
    broken["components"][0]["hashes"][0]["content"] = "not hex"
    with pytest.raises(InvalidSbom, match="components/0/hashes/0/content"):
        validate_sbom(broken)
    with pytest.raises(InvalidSbom, match="Additional properties"):
        validate_sbom({**doc, "unexpected": True})
    with pytest.raises(InvalidSbom, match="not unique"):
        validate_sbom({**doc, "components": [doc["components"][0], {**doc["components"][0], "name": "other"}]})


def test_an_sbom_is_checked_against_the_schema_of_the_version_it_declares() -> None:
    """A CycloneDX 1.5 document (as releases stored before this library was used) still validates."""
    sha = "cd" * 32
    component = {"type": "firmware", "bom-ref": "fw", "name": "sensor", "hashes": [{"alg": "SHA-256", "content": sha}]}
    older = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.UUID(int=2)}",
        "version": 1,
        "metadata": {"timestamp": "2026-01-01T00:00:00+00:00", "component": component},
        "components": [dict(component, **{"bom-ref": "fw#image"})],
    }
    validate_sbom(older)
    with pytest.raises(InvalidSbom, match=r"CycloneDX 1\.5"):
        validate_sbom({**older, "metadata": {**older["metadata"], "timestamp": "yesterday"}})


def facts(**changes: object) -> UnitReleaseFacts:
    base = UnitReleaseFacts(
        release_id=RELEASE,
        release_state=ReleaseState.APPROVED,
        release_product_id="sensor",
        attached=True,
        fixture_site_id="cm-a",
        order_id="o-1",
        order_site_id="cm-a",
        order_product_id="sensor",
        order_active=True,
        serial=SERIAL,
        unit_on_order=True,
        unit_revoked=False,
        unit_key_p256=True,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"fixture_site_id": "cm-b"}, "wrong_site"),
        ({"order_active": False}, "order_inactive"),
        ({"unit_on_order": False}, "unit_not_provisioned"),
        ({"unit_revoked": True}, "unit_revoked"),
        ({"release_state": ReleaseState.WITHDRAWN}, "release_withdrawn"),
        ({"release_state": ReleaseState.UPLOADED}, "release_not_approved"),
        ({"release_product_id": "other"}, "release_wrong_product"),
        ({"attached": False}, "release_not_attached"),
        ({"unit_key_p256": False}, "unit_key_unsupported"),
    ],
)
def test_each_release_policy_refuses_with_its_code(changes: dict[str, object], code: str) -> None:
    authorize_unit_release(facts())
    with pytest.raises(FirmwareRefusal) as refused:
        authorize_unit_release(facts(**changes))
    assert refused.value.code == code


def test_a_release_or_order_that_names_nothing_is_refused_as_not_found() -> None:
    assert release_found("r-1", "row") == "row"
    with pytest.raises(FirmwareRefusal) as refused:
        release_found("r-1", None)
    assert refused.value.code == "release_not_found"
    with pytest.raises(FirmwareRefusal) as refused:
        order_found("o-1", None)
    assert refused.value.code == "order_not_found"


def test_the_device_side_imports_nothing_from_the_server_side() -> None:
    import subprocess
    import sys

    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in {"fastapi", "sqlalchemy", "alembic", "uvicorn", "psycopg", "starlette", "typer"} or name in {
            "fabguard.service", "fabguard.store", "fabguard.api", "fabguard.firmware"
        }:
            raise ImportError("server-side module " + name + " imported by the device side")
        return None
sys.meta_path.insert(0, Block())
import fabguard.fixture.firmware
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_firmware_errors_join_the_one_root_with_their_own_codes() -> None:
    with pytest.raises(envelope.EnvelopeError) as sealed:
        envelope.unwrap_data_key(b"k" * 32, bytes(12), b"not wrapped under this kek", RELEASE)
    # The server's own sealed material failing to open is the server's failure.
    assert isinstance(sealed.value, FabGuardError)
    assert (sealed.value.code, sealed.value.status) == ("firmware_envelope_invalid", 500)
    with pytest.raises(ValueError, match="bomFormat") as sbom:  # still a ValueError, as before
        validate_sbom({"bomFormat": "SPDX"})
    assert isinstance(sbom.value, InvalidSbom) and isinstance(sbom.value, FabGuardError)
    assert (sbom.value.code, sbom.value.status) == ("sbom_invalid", 500)
