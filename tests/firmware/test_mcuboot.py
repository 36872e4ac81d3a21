"""MCUboot images built with imgtool: signed (ECDSA P-256), encrypted (ECIES-P256), and opened again.

imgtool itself is the referee where it can be: ``dumpinfo`` reads what we built, ``verify`` checks the
signature of a signed-only image (on an encrypted one it hashes the ciphertext and says "invalid hash"),
and ``keygen``/``getpub`` make the bootloader's encryption key the way a product team would.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fabguard.domain.errors import FabGuardError
from fabguard.firmware import mcuboot

pytestmark = pytest.mark.skipif(not mcuboot.imgtool_available(), reason="imgtool is not installed")

SLOT = 0x40000
HEADER = 0x200
VERSION = "1.4.2+17"


def distinctive(size: int) -> bytes:
    """Recognisable at any offset and never repeating."""
    out = bytearray()
    i = 0
    while len(out) < size:
        out += f"<MCUBOOT-PLAINTEXT-{i:07d}>".encode()
        i += 1
    return bytes(out[:size])


FIRMWARE = distinctive(6 * 1024)  # a multiple of 16: imgtool adds no padding


def imgtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imgtool.main", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def pem_public(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def dumpinfo(image: bytes, tmp_path: Path) -> dict[str, object]:
    path = tmp_path / "dump.bin"
    path.write_bytes(image)
    done = imgtool("dumpinfo", "-f", "json", path)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.fixture(scope="module")
def signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def bootloader_key(tmp_path_factory: pytest.TempPathFactory) -> ec.EllipticCurvePrivateKey:
    """The bootloader's encryption key pair, made by ``imgtool keygen -t ecdsa-p256``."""
    work = tmp_path_factory.mktemp("bootloader")
    done = imgtool("keygen", "-t", "ecdsa-p256", "-k", "enc.pem", cwd=work)
    assert done.returncode == 0, done.stderr
    key = serialization.load_pem_private_key((work / "enc.pem").read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    done = imgtool("getpub", "-k", "enc.pem", "-e", "pem", "-o", "enc-pub.pem", cwd=work)
    assert done.returncode == 0, done.stderr
    assert (work / "enc-pub.pem").read_bytes().strip() == pem_public(key).strip()
    return key


@pytest.fixture(scope="module")
def encrypted(signing_key: ec.EllipticCurvePrivateKey, bootloader_key: ec.EllipticCurvePrivateKey) -> bytes:
    return mcuboot.build_mcuboot_image(
        FIRMWARE,
        signing_key=signing_key,
        encryption_key_pem=pem_public(bootloader_key),
        version=VERSION,
        slot_size=SLOT,
        header_size=HEADER,
    )


def test_imgtool_version_is_reported() -> None:
    assert mcuboot.imgtool_version() == "2.5.0"


def test_dumpinfo_shows_the_header_the_version_and_the_ecies_tlv(
    encrypted: bytes, signing_key: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    info = dumpinfo(encrypted, tmp_path)
    header = info["header"]
    assert isinstance(header, dict)
    assert header["magic"] == mcuboot.IMAGE_MAGIC
    assert header["hdr_size"] == HEADER
    assert header["img_size"] == len(FIRMWARE)
    assert header["flags"] == mcuboot.IMAGE_F_ENCRYPTED_AES128
    assert header["version"] == VERSION
    tlv_area = info["tlv_area"]
    assert isinstance(tlv_area, dict)
    tlvs = {t["type_name"]: t for t in tlv_area["tlvs"]}
    assert set(tlvs) == {"SHA256", "KEYHASH", "ECDSASIG", "ENCEC256"}
    assert tlvs["ENCEC256"]["type"] == mcuboot.IMAGE_TLV_ENC_EC256 == 0x32
    assert tlvs["ENCEC256"]["len"] == 65 + 32 + 16
    assert bytes.fromhex(tlvs["ENCEC256"]["data"])[0] == 0x04  # uncompressed ephemeral point
    spki = signing_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert bytes.fromhex(tlvs["KEYHASH"]["data"]) == hashlib.sha256(spki).digest()
    # and our parser reads the same
    parsed = mcuboot.parse_mcuboot_image(encrypted)
    assert parsed.version_text == VERSION and parsed.image_size == len(FIRMWARE)
    assert parsed.tlv(mcuboot.IMAGE_TLV_ENC_EC256) == bytes.fromhex(tlvs["ENCEC256"]["data"])


def test_the_body_is_ciphertext(encrypted: bytes) -> None:
    assert FIRMWARE[:64] not in encrypted
    assert b"MCUBOOT-PLAINTEXT" not in encrypted


def test_decrypting_gives_back_exactly_the_original(
    encrypted: bytes, bootloader_key: ec.EllipticCurvePrivateKey, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    assert mcuboot.decrypt_mcuboot_image(encrypted, bootloader_key) == FIRMWARE
    # and the signature holds over the decrypted image, as the bootloader checks it
    region = mcuboot.decrypted_hash_region(encrypted, bootloader_key)
    mcuboot.verify_mcuboot_signature(encrypted, signing_key.public_key(), hash_region=region)


def test_imgtool_verify_calls_the_encrypted_image_invalid(encrypted: bytes, tmp_path: Path) -> None:
    """As FIELD-NOTES says: verify hashes the ciphertext, so it cannot check an encrypted image."""
    (tmp_path / "enc.bin").write_bytes(encrypted)
    done = imgtool("verify", "enc.bin", cwd=tmp_path)
    assert done.returncode != 0
    assert "invalid hash" in done.stdout


def test_imgtool_verifies_a_signed_unencrypted_image(signing_key: ec.EllipticCurvePrivateKey, tmp_path: Path) -> None:
    image = mcuboot.build_mcuboot_image(
        FIRMWARE, signing_key=signing_key, encryption_key_pem=None, version=VERSION, slot_size=SLOT
    )
    (tmp_path / "signed.bin").write_bytes(image)
    (tmp_path / "sign-pub.pem").write_bytes(pem_public(signing_key))
    done = imgtool("verify", "-k", "sign-pub.pem", "signed.bin", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Image was correctly validated" in done.stdout
    assert "Image version: 1.4.2+17" in done.stdout
    assert image[HEADER : HEADER + len(FIRMWARE)] == FIRMWARE
    assert mcuboot.parse_mcuboot_image(image).flags == 0
    # another key is refused by imgtool and by us
    other = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "other-pub.pem").write_bytes(pem_public(other))
    done = imgtool("verify", "-k", "other-pub.pem", "signed.bin", cwd=tmp_path)
    assert done.returncode != 0
    with pytest.raises(mcuboot.McubootError, match="another signing key"):
        mcuboot.verify_mcuboot_signature(image, other.public_key())
    with pytest.raises(mcuboot.McubootError, match="not encrypted"):
        mcuboot.decrypt_mcuboot_image(image, ec.generate_private_key(ec.SECP256R1()))


def test_a_wrong_encryption_key_fails_on_the_mac(encrypted: bytes) -> None:
    with pytest.raises(mcuboot.McubootDecryptError, match="MAC does not match"):
        mcuboot.decrypt_mcuboot_image(encrypted, ec.generate_private_key(ec.SECP256R1()))


def enc_tlv_offset(image: bytes) -> int:
    parsed = mcuboot.parse_mcuboot_image(image)
    value = parsed.tlv(mcuboot.IMAGE_TLV_ENC_EC256)
    assert value is not None
    offset = image.index(value)
    assert image.count(value) == 1
    return offset


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (1, "not a P-256 point|MAC does not match"),  # the ephemeral public key's x
        (64, "not a P-256 point|MAC does not match"),  # its y
        (65, "MAC does not match"),  # the MAC
        (65 + 32, "MAC does not match"),  # the encrypted key
        (65 + 32 + 15, "MAC does not match"),
    ],
)
def test_a_flipped_byte_in_the_encrypted_key_tlv_fails(
    encrypted: bytes, bootloader_key: ec.EllipticCurvePrivateKey, where: int, expected: str
) -> None:
    altered = bytearray(encrypted)
    altered[enc_tlv_offset(encrypted) + where] ^= 0x01
    with pytest.raises(mcuboot.McubootDecryptError, match=expected):
        mcuboot.decrypt_mcuboot_image(bytes(altered), bootloader_key)


def test_a_flipped_byte_in_the_body_fails_the_hash(
    encrypted: bytes, bootloader_key: ec.EllipticCurvePrivateKey
) -> None:
    altered = bytearray(encrypted)
    altered[HEADER + 1000] ^= 0x80
    with pytest.raises(mcuboot.McubootDecryptError, match="SHA256 TLV"):
        mcuboot.decrypt_mcuboot_image(bytes(altered), bootloader_key)


def test_a_body_not_a_multiple_of_16_comes_back_zero_padded(
    signing_key: ec.EllipticCurvePrivateKey, bootloader_key: ec.EllipticCurvePrivateKey
) -> None:
    firmware = distinctive(3 * 1024 + 5)
    image = mcuboot.build_mcuboot_image(
        firmware,
        signing_key=signing_key,
        encryption_key_pem=pem_public(bootloader_key),
        version="2.0.0",
        slot_size=SLOT,
    )
    assert mcuboot.decrypt_mcuboot_image(image, bootloader_key) == firmware + bytes(11)


def test_aes_256_images_open_too(
    signing_key: ec.EllipticCurvePrivateKey, bootloader_key: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    image = mcuboot.build_mcuboot_image(
        FIRMWARE,
        signing_key=signing_key,
        encryption_key_pem=pem_public(bootloader_key),
        version="3.1.4",
        slot_size=SLOT,
        aes_key_bits=256,
    )
    parsed = mcuboot.parse_mcuboot_image(image)
    assert parsed.flags == mcuboot.IMAGE_F_ENCRYPTED_AES256
    enc_tlv = parsed.tlv(mcuboot.IMAGE_TLV_ENC_EC256)
    assert enc_tlv is not None and len(enc_tlv) == 65 + 32 + 32
    assert mcuboot.decrypt_mcuboot_image(image, bootloader_key) == FIRMWARE


def test_no_private_key_reaches_the_disk_and_the_work_directory_is_private_and_removed(
    signing_key: ec.EllipticCurvePrivateKey,
    bootloader_key: ec.EllipticCurvePrivateKey,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Snapshot the work directory at each imgtool call: only public keys, mode 0700/0600; gone afterwards."""
    seen: list[tuple[int, dict[str, tuple[int, bytes]]]] = []
    real = mcuboot.run_imgtool

    def spy(*args: str | os.PathLike[str], cwd: Path | None = None) -> str:
        assert cwd is not None
        files = {p.name: (stat.S_IMODE(p.stat().st_mode), p.read_bytes()) for p in cwd.iterdir()}
        seen.append((stat.S_IMODE(cwd.stat().st_mode), files))
        return real(*args, cwd=cwd)

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(mcuboot.build, "run_imgtool", spy)  # where build_mcuboot_image looks it up
    mcuboot.build_mcuboot_image(
        FIRMWARE,
        signing_key=signing_key,
        encryption_key_pem=pem_public(bootloader_key),
        version=VERSION,
        slot_size=SLOT,
    )
    assert len(seen) == 2
    for dir_mode, files in seen:
        assert dir_mode == 0o700
        for name, (mode, content) in files.items():
            if name in {"firmware.bin", "sign-pub.pem", "enc-pub.pem", "signature.b64"}:
                assert mode == 0o600, name
            assert b"PRIVATE KEY" not in content, name
    assert set(seen[1][1]) >= {"firmware.bin", "sign-pub.pem", "enc-pub.pem", "signature.b64", "payload.bin"}
    assert list(tmp_path.iterdir()) == []


def test_a_private_key_pem_is_refused_as_the_encryption_key(
    signing_key: ec.EllipticCurvePrivateKey, bootloader_key: ec.EllipticCurvePrivateKey
) -> None:
    private_pem = bootloader_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(mcuboot.McubootError, match="PEM public key"):
        mcuboot.build_mcuboot_image(
            FIRMWARE, signing_key=signing_key, encryption_key_pem=private_pem, version=VERSION, slot_size=SLOT
        )


@pytest.mark.parametrize("version", ["1.4.0-rc1", "01.2.3", "256.0.0", "1.2.65536", "", "-v"])
def test_versions_mcuboot_cannot_hold_are_refused(version: str, signing_key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(mcuboot.McubootError, match="version"):
        mcuboot.build_mcuboot_image(
            FIRMWARE, signing_key=signing_key, encryption_key_pem=None, version=version, slot_size=SLOT
        )


def test_an_image_too_big_for_the_slot_is_refused_by_imgtool(signing_key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(mcuboot.ImgtoolError, match="exceeds"):
        mcuboot.build_mcuboot_image(
            FIRMWARE, signing_key=signing_key, encryption_key_pem=None, version=VERSION, slot_size=0x1000
        )


def test_decrypts_an_image_imgtool_signed_with_a_key_file_as_in_the_field_notes(tmp_path: Path) -> None:
    """The reference decryption against imgtool's own one-step path (``sign -k SIGN -E ENC_PUB``)."""
    for name in ("sign.pem", "enc.pem"):
        assert imgtool("keygen", "-t", "ecdsa-p256", "-k", name, cwd=tmp_path).returncode == 0
    assert imgtool("getpub", "-e", "pem", "-k", "enc.pem", "-o", "enc-pub.pem", cwd=tmp_path).returncode == 0
    (tmp_path / "fw.bin").write_bytes(FIRMWARE)
    done = imgtool(
        "sign",
        "-k",
        "sign.pem",
        "-E",
        "enc-pub.pem",
        "--header-size",
        "0x200",
        "--pad-header",
        "--align",
        "8",
        "-v",
        "0.9.1",
        "-S",
        hex(SLOT),
        "fw.bin",
        "out.bin",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    enc_key = serialization.load_pem_private_key((tmp_path / "enc.pem").read_bytes(), password=None)
    sign_key = serialization.load_pem_private_key((tmp_path / "sign.pem").read_bytes(), password=None)
    assert isinstance(enc_key, ec.EllipticCurvePrivateKey) and isinstance(sign_key, ec.EllipticCurvePrivateKey)
    image = (tmp_path / "out.bin").read_bytes()
    assert mcuboot.decrypt_mcuboot_image(image, enc_key) == FIRMWARE
    region = mcuboot.decrypted_hash_region(image, enc_key)
    mcuboot.verify_mcuboot_signature(image, sign_key.public_key(), hash_region=region)


def test_cli_builds_an_encrypted_mcuboot_image_from_an_encrypted_signing_key(
    tmp_path: Path, bootloader_key: ec.EllipticCurvePrivateKey
) -> None:
    import os

    from typer.testing import CliRunner

    from fabguard.cli.main import app
    from fabguard.pki.keys import new_signing_key, write_encrypted_key

    write_encrypted_key(new_signing_key(), tmp_path / "sign.pem", os.environ["FABGUARD_KEY_PASSPHRASE"].encode())
    (tmp_path / "enc.pub").write_bytes(pem_public(bootloader_key))
    firmware = distinctive(5000)
    (tmp_path / "app.bin").write_bytes(firmware)
    args = [
        "firmware",
        "mcuboot",
        str(tmp_path / "app.bin"),
        "--signing-key",
        str(tmp_path / "sign.pem"),
        "--version",
        "2.0.1+7",
        "--slot-size",
        "0x40000",
        "--out",
        str(tmp_path / "app.img"),
        "--encryption-key",
        str(tmp_path / "enc.pub"),
    ]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    opened = mcuboot.decrypt_mcuboot_image((tmp_path / "app.img").read_bytes(), bootloader_key)
    assert opened[: len(firmware)] == firmware and set(opened[len(firmware) :]) <= {0}
    bad = CliRunner().invoke(app, [*args[:5], "1.0.0-rc1", *args[6:]], catch_exceptions=False)
    assert bad.exit_code in (2, 3) and "Traceback" not in bad.output


def test_cli_shows_an_image_it_cannot_build_as_one_line_with_its_code(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fabguard.cli.main import app
    from fabguard.pki.keys import new_signing_key, write_encrypted_key

    write_encrypted_key(new_signing_key(), tmp_path / "sign.pem", os.environ["FABGUARD_KEY_PASSPHRASE"].encode())
    (tmp_path / "empty.bin").write_bytes(b"")
    args = ["firmware", "mcuboot", str(tmp_path / "empty.bin"), "--signing-key", str(tmp_path / "sign.pem")]
    args += ["--version", "1.0.0", "--slot-size", "0x40000", "--out", str(tmp_path / "app.img")]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"}, catch_exceptions=False)
    assert result.exit_code == 3
    assert result.output.strip() == "error: the firmware image is empty [mcuboot_image_invalid]", result.output
    assert not (tmp_path / "app.img").exists()


def test_mcuboot_errors_join_the_one_root_with_their_own_codes() -> None:
    with pytest.raises(mcuboot.McubootError, match="digits only") as bad:
        mcuboot.check_version("1.x")
    assert isinstance(bad.value, FabGuardError)
    assert (bad.value.code, bad.value.status) == ("mcuboot_image_invalid", 422)
    assert (mcuboot.McubootDecryptError.code, mcuboot.McubootDecryptError.status) == ("mcuboot_decrypt_failed", 422)
    assert (mcuboot.ImgtoolError.code, mcuboot.ImgtoolError.status) == ("imgtool_failed", 500)
