"""Encrypted firmware end to end over mutual TLS: upload, approve, attach, per-unit release, device opens it."""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from fabguard.api.documents import CycloneDxSbom
from fabguard.cli.common import state
from fabguard.cli.firmware import firmware_app
from fabguard.domain.errors import FIRMWARE_REFUSAL_STATUS
from fabguard.domain.values import OrderState, ProductId, SiteId
from fabguard.firmware.sbom import firmware_sbom, validate_sbom
from fabguard.fixture import firmware as device_side
from fabguard.fixture.client import FabGuardClientError, FixtureClient
from fabguard.fixture.device import SimulatedDevice
from fabguard.service.access import tokens
from fabguard.service.authority import revocation
from fabguard.service.catalog import orders, product_catalog
from fabguard.service.core import events
from fabguard.store.eventlog import event_count
from tests.support import World, tested_device

RELEASES = "/api/v1/firmware/releases"
MiB = 1024 * 1024


def documented_sbom(doc: dict[str, Any]) -> bool:
    """The SBOM fits the envelope /openapi.json documents (api/documents.py) and reads back unchanged through it."""
    return CycloneDxSbom.model_validate(doc).model_dump(by_alias=True, exclude_unset=True) == doc


def distinctive_image(size: int = MiB) -> bytes:
    """Recognisable at any offset, and never repeating: a slice found anywhere can only come from here."""
    out = bytearray()
    i = 0
    while len(out) < size:
        out += f"<FABGUARD-PLAINTEXT-{i:09d}>".encode()
        i += 1
    return bytes(out[:size])


@dataclass
class Line:
    """A world with an engineer and an approver, an order, one fixture and provisioned units."""

    world: World
    order: str
    fx: FixtureClient
    devices: dict[str, SimulatedDevice]
    engineer: httpx.Client
    approver: httpx.Client
    firmware_key: device_side.FirmwarePublicKey

    def upload(self, image: bytes, version: str = "1.0.0", *, client: httpx.Client | None = None, **kw: Any) -> Any:
        body = {"product_id": "sensor", "version": version, "image": base64.b64encode(image).decode(), **kw}
        return (client or self.engineer).post(RELEASES, json=body)

    def released(self, image: bytes, version: str = "1.0.0", order: str | None = None) -> str:
        """A release uploaded, approved and attached to the order."""
        r = self.upload(image, version, notes="Fixes the watchdog.")
        assert r.status_code == 201, r.text
        rid: str = r.json()["id"]
        assert self.approver.post(f"{RELEASES}/{rid}/approve").status_code == 200
        assert self.engineer.post(f"{RELEASES}/{rid}/attach", json={"order_id": order or self.order}).status_code == 200
        return rid

    def fetch(self, rid: str, serial: str, *, fx: FixtureClient | None = None, order: str | None = None) -> bytes:
        return device_side.fetch_package(fx or self.fx, order_id=order or self.order, serial=serial, release_id=rid)

    def open(self, package: bytes, serial: str, device: SimulatedDevice | None = None) -> device_side.OpenedFirmware:
        key = (device or self.devices[serial]).key
        return device_side.open_package(package, device_key=key, serial=serial, firmware_key=self.firmware_key)


def bearer(world: World, role: str, name: str) -> httpx.Client:
    _, secret = tokens.create_token(world.inst, name=name, role=role, actor="test")
    return httpx.Client(
        base_url=world.url,
        verify=ssl.create_default_context(cafile=str(world.root_ca)),
        headers={"Authorization": f"Bearer {secret}"},
        timeout=60,
    )


def start_line(world: World) -> Iterator[Line]:
    order = world.order(quota=10)
    fx = world.fixture("fx-1")
    devices = {}
    for serial in ("SN-F1", "SN-F2", "SN-F3"):
        devices[serial] = tested_device(fx, serial)
        fx.provision(order, serial, devices[serial].csr_pem())
    engineer, approver = bearer(world, "engineer", "erin"), bearer(world, "approver", "alex")
    pem = httpx.get(f"{world.url}/api/v1/firmware/key", verify=ssl.create_default_context(cafile=str(world.root_ca)))
    key = device_side.load_firmware_public_key(pem.json()["public_key"].encode())
    yield Line(world, order, fx, devices, engineer, approver, key)
    engineer.close()
    approver.close()


@pytest.fixture
def line(world: World) -> Iterator[Line]:
    """On SQLite (the at-rest checks read its files)."""
    yield from start_line(world)


@pytest.fixture
def any_line(any_world: World) -> Iterator[Line]:
    """On each database engine in turn."""
    yield from start_line(any_world)


def test_each_provisioned_unit_gets_a_package_only_it_can_open(any_line: Line) -> None:
    line = any_line
    image = distinctive_image()
    rid = line.released(image)
    packages = {serial: line.fetch(rid, serial) for serial in line.devices}
    for serial, package in packages.items():
        opened = line.open(package, serial)
        assert opened.image == image
        assert opened.release_id == rid and opened.version == "1.0.0"
        assert image[:4096] not in package  # the fixture only ever carries ciphertext
    with pytest.raises(device_side.NotForThisDevice):
        line.open(packages["SN-F1"], "SN-F1", device=line.devices["SN-F2"])
    with pytest.raises(device_side.NotForThisDevice):
        line.open(packages["SN-F1"], "SN-F2")  # the right key, but the package names another unit
    released = events.list_events(line.world.inst, kind="firmware.released")
    assert sorted(e["serial"] for e in released) == sorted(line.devices)
    assert {e["detail"]["release_id"] for e in released} == {rid}
    assert {e["fixture_id"] for e in released} == {"fx-1"}


def test_flipped_bytes_in_a_fetched_package_are_rejected_by_the_device(line: Line) -> None:
    rid = line.released(distinctive_image(64 * 1024))
    package = line.fetch(rid, "SN-F1")
    parsed = device_side.parse_package(package)
    manifest_at = package.index(parsed.manifest)
    offsets = {
        "magic": 0,
        "manifest": manifest_at + 20,
        "signature": package.index(parsed.signature) + 5,
        "wrapped key": package.index(parsed.wrapped_key) + 3,
        "ciphertext start": len(package) - len(parsed.image_ciphertext),
        "ciphertext middle": len(package) - len(parsed.image_ciphertext) // 2,
        "gcm tag": len(package) - 1,
    }
    for where, at in offsets.items():
        bad = bytearray(package)
        bad[at] ^= 0x01
        with pytest.raises(device_side.FirmwarePackageError):
            line.open(bytes(bad), "SN-F1")
            pytest.fail(f"a flipped byte in the {where} went unnoticed")
    assert line.open(package, "SN-F1").image == distinctive_image(64 * 1024)


def test_the_manifest_is_signed_and_names_the_sbom_which_is_cyclonedx(line: Line) -> None:
    image = distinctive_image(10_000)
    rid = line.released(image)
    release = line.engineer.get(f"{RELEASES}/{rid}").json()
    manifest = release["manifest"]
    assert manifest["sha256"] == hashlib.sha256(image).hexdigest() and manifest["size"] == len(image)
    assert release["state"] == "approved" and release["orders"] == [line.order]
    assert release["approved_by"].startswith("alex") and release["uploaded_by"].startswith("erin")
    sbom = line.engineer.get(f"{RELEASES}/{rid}/sbom").json()
    validate_sbom(sbom)
    assert documented_sbom(sbom)
    canonical = hashlib.sha256(json.dumps(sbom, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert manifest["sbom_sha256"] == canonical
    assert sbom["metadata"]["component"]["hashes"][0]["content"] == manifest["sha256"]
    package = line.fetch(rid, "SN-F2")
    assert line.open(package, "SN-F2").manifest == manifest
    kinds = [e["kind"] for e in events.list_events(line.world.inst) if e["kind"].startswith("firmware.")]
    assert kinds == ["firmware.uploaded", "firmware.approved", "firmware.attached", "firmware.released"]


def test_nothing_of_the_plaintext_image_reaches_the_servers_disk_or_database(line: Line) -> None:
    image = distinctive_image()
    rid = line.released(image)
    for serial in line.devices:
        line.fetch(rid, serial)
    home = line.world.inst.home
    files = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.name == "fabguard.db" for p in files) and any(p.name.endswith("-wal") for p in files)
    assert any(p.name == "firmware-kek.json" for p in files)
    slices = [image[i : i + 64] for i in (0, len(image) // 3, len(image) // 2, len(image) - 64)]
    for path in files:
        data = path.read_bytes()
        for s in slices:
            assert s not in data, f"plaintext image bytes found in {path.relative_to(home)}"
        assert b"FABGUARD-PLAINTEXT" not in data, f"plaintext image bytes found in {path.relative_to(home)}"


def test_dual_control_needs_a_second_person_and_engineers_cannot_approve(line: Line) -> None:
    admin = line.world.admin()
    r = line.upload(b"dual", "2.0.0", client=admin, dual_control=True)
    assert r.status_code == 201 and r.json()["dual_control"] is True
    rid = r.json()["id"]
    same = admin.post(f"{RELEASES}/{rid}/approve")
    assert same.status_code == 403 and same.json()["error"]["code"] == "same_approver"
    engineer = line.engineer.post(f"{RELEASES}/{rid}/approve")
    assert engineer.status_code == 403 and engineer.json()["error"]["code"] == "forbidden"
    assert line.approver.post(f"{RELEASES}/{rid}/approve").json()["state"] == "approved"
    single = line.upload(b"single", "2.0.1", client=admin).json()["id"]
    assert admin.post(f"{RELEASES}/{single}/approve").status_code == 200  # no dual control asked for
    again = admin.post(f"{RELEASES}/{single}/approve")
    assert again.status_code == 409 and again.json()["error"]["code"] == "release_already_approved"
    admin.close()


def test_upload_limits_and_duplicates_are_refused_with_codes(line: Line) -> None:
    assert line.upload(b"x", "3.0.0").status_code == 201
    dup = line.upload(b"y", "3.0.0")
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "release_exists"
    big = line.upload(b"\0" * (2 * MiB + 1), "3.0.1")
    assert big.status_code == 413 and big.json()["error"]["code"] == "image_too_large"
    bad = line.engineer.post(RELEASES, json={"product_id": "sensor", "version": "3.0.2", "image": "not base64!"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "image_invalid"
    version = line.upload(b"x", "3.0 beta")
    assert version.status_code == 422 and version.json()["error"]["code"] == "version_invalid"
    product = line.engineer.post(RELEASES, json={"product_id": "nope", "version": "1", "image": "eA=="})
    assert product.status_code == 404 and product.json()["error"]["code"] == "product_not_found"
    reader = bearer(line.world, "auditor", "audrey")
    assert line.upload(b"x", "3.0.3", client=reader).status_code == 403
    assert [r["version"] for r in reader.get(RELEASES).json()] == ["3.0.0"]
    reader.close()


def test_an_sbom_from_the_oem_build_is_kept_when_valid_and_describing_the_image(line: Line) -> None:
    image = b"\x7fELF-oem-build" * 8
    sha = hashlib.sha256(image).hexdigest()
    oem = firmware_sbom(
        product_id="sensor",
        version="4.0.0",
        sha256=sha,
        size=len(image),
        release_id="build-77",
        supplier="Acme Build",
        timestamp=datetime(2026, 11, 1, tzinfo=UTC),
    )
    oem["components"].append({"type": "library", "name": "mbedtls", "version": "3.6.2", "bom-ref": "mbedtls"})
    r = line.upload(image, "4.0.0", sbom=oem)
    assert r.status_code == 201, r.text
    stored = line.engineer.get(f"{RELEASES}/{r.json()['id']}/sbom").json()
    assert documented_sbom(stored)
    assert (
        stored == oem
        and r.json()["manifest"]["sbom_sha256"]
        == hashlib.sha256(json.dumps(oem, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    )
    invalid = line.upload(image, "4.0.1", sbom={**oem, "specVersion": "1.6", "version": "one"})
    assert invalid.status_code == 422 and invalid.json()["error"]["code"] == "uploaded_sbom_invalid"
    other = line.upload(b"another image", "4.0.2", sbom=oem)
    assert other.status_code == 422 and other.json()["error"]["code"] == "uploaded_sbom_mismatch"
    assert [x["version"] for x in line.engineer.get(RELEASES).json()] == ["4.0.0"]


# Refusals: each provoked through the API, each with its status and code, recorded, nothing released.
_PROVOKED: set[str] = set()


def refused(line: Line, code: str, fetch: Callable[[], bytes]) -> None:
    _PROVOKED.add(code)
    before = event_count_of(line)
    with pytest.raises(FabGuardClientError) as err:
        fetch()
    assert (err.value.status, err.value.code) == (FIRMWARE_REFUSAL_STATUS[code], code)
    after = events.list_events(line.world.inst, after=before)
    assert [(e["kind"], e["code"]) for e in after] == [("firmware.refused", code)]


def event_count_of(line: Line) -> int:
    with line.world.inst.db.read() as s:
        return event_count(s)


def test_each_refusal_has_its_code_and_is_recorded(any_line: Line) -> None:
    line = any_line
    world, inst = line.world, line.world.inst
    rid = line.released(distinctive_image(4096))
    unattached = line.upload(b"u", "1.1.0").json()["id"]
    assert line.approver.post(f"{RELEASES}/{unattached}/approve").status_code == 200
    unapproved = line.upload(b"n", "1.2.0").json()["id"]
    line.engineer.post(f"{RELEASES}/{unapproved}/attach", json={"order_id": line.order})
    withdrawn = line.released(b"w", "1.3.0")
    assert line.engineer.post(f"{RELEASES}/{withdrawn}/withdraw", json={"reason": "bricks rev A"}).status_code == 200
    tested_device(line.fx, "SN-UNPROV")

    refused(line, "release_not_found", lambda: line.fetch("fw_nope", "SN-F1"))
    refused(line, "order_not_found", lambda: line.fetch(rid, "SN-F1", order="no-such-order"))
    refused(line, "unit_not_provisioned", lambda: line.fetch(rid, "SN-UNPROV"))
    refused(line, "release_not_attached", lambda: line.fetch(unattached, "SN-F1"))
    refused(line, "release_not_approved", lambda: line.fetch(unapproved, "SN-F1"))
    refused(line, "release_withdrawn", lambda: line.fetch(withdrawn, "SN-F1"))
    other_site = world.fixture("fx-b", site="cm-b")
    refused(line, "wrong_site", lambda: line.fetch(rid, "SN-F1", fx=other_site))
    revocation.revoke_unit(inst, "SN-F3", reason_code="key_compromise", note="key leaked", actor="test")
    refused(line, "unit_revoked", lambda: line.fetch(rid, "SN-F3"))

    product_catalog.create_product(inst, product_id=ProductId("meter"), name="Meter", actor="test")
    meter = line.engineer.post(RELEASES, json={"product_id": "meter", "version": "9", "image": "eA=="}).json()["id"]
    line.approver.post(f"{RELEASES}/{meter}/approve")
    wrong = line.engineer.post(f"{RELEASES}/{meter}/attach", json={"order_id": line.order})
    assert wrong.status_code == 409 and wrong.json()["error"]["code"] == "release_wrong_product"
    refused(line, "release_wrong_product", lambda: line.fetch(meter, "SN-F1"))

    product_catalog.create_product(
        inst, product_id=ProductId("big"), name="Big keys", key_types=["ec-p384"], actor="test"
    )
    big_order = orders.create_order(inst, product_id=ProductId("big"), site_id=SiteId("cm-a"), quota=2, actor="test").id
    big_device = SimulatedDevice("SN-P384", key=ec.generate_private_key(ec.SECP384R1()))
    tested_device(line.fx, "SN-P384")
    line.fx.provision(big_order, "SN-P384", big_device.csr_pem())
    big_rid = line.engineer.post(RELEASES, json={"product_id": "big", "version": "1", "image": "eA=="}).json()["id"]
    line.approver.post(f"{RELEASES}/{big_rid}/approve")
    line.engineer.post(f"{RELEASES}/{big_rid}/attach", json={"order_id": big_order})
    refused(line, "unit_key_unsupported", lambda: line.fetch(big_rid, "SN-P384", order=big_order))

    orders.set_order_state(inst, line.order, OrderState("suspended"), actor="test")
    refused(line, "order_inactive", lambda: line.fetch(rid, "SN-F1"))
    orders.set_order_state(inst, line.order, OrderState("active"), actor="test")
    assert line.open(line.fetch(rid, "SN-F1"), "SN-F1").image == distinctive_image(4096)
    assert set(FIRMWARE_REFUSAL_STATUS) == _PROVOKED, set(FIRMWARE_REFUSAL_STATUS) - _PROVOKED


def test_withdrawing_stops_further_releases_and_cannot_be_undone(line: Line) -> None:
    rid = line.released(b"firmware v1")
    assert line.open(line.fetch(rid, "SN-F1"), "SN-F1").image == b"firmware v1"
    r = line.engineer.post(f"{RELEASES}/{rid}/withdraw", json={"reason": "security fix supersedes it"})
    assert r.json()["state"] == "withdrawn" and r.json()["withdraw_reason"] == "security fix supersedes it"
    for path, body in (("approve", None), ("withdraw", {"reason": "again"}), ("attach", {"order_id": line.order})):
        client = line.approver if path == "approve" else line.engineer
        again = client.post(f"{RELEASES}/{rid}/{path}", json=body)
        assert again.status_code == 409 and again.json()["error"]["code"] == "release_withdrawn", path
    with pytest.raises(FabGuardClientError) as err:
        line.fetch(rid, "SN-F2")
    assert err.value.code == "release_withdrawn"


def test_cli_uploads_approves_attaches_lists_and_the_device_opens_a_fetched_package(
    line: Line, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    monkeypatch.setattr(state, "home", line.world.inst.home)
    _, approver_token = tokens.create_token(line.world.inst, name="cli-approver", role="approver", actor="test")

    def fw(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
        result = runner.invoke(firmware_app, list(args), env={"COLUMNS": "250", **(env or {})}, catch_exceptions=False)
        return result.exit_code, result.output

    image = tmp_path / "app.bin"
    image.write_bytes(distinctive_image(50_000))
    code, out = fw("upload", str(image), "--product", "sensor", "--version", "4.0.0", "--dual-control")
    assert code == 0, out
    rid = out.split("Release ")[1].split(":")[0].strip()
    code, out = fw("approve", rid, env={"FABGUARD_TOKEN": approver_token})
    assert code == 0 and "approved" in out, out
    assert fw("attach", rid, "--order", line.order)[0] == 0
    code, out = fw("list")
    assert code == 0 and rid in out and "approved" in out and line.order in out
    assert fw("key", "--out", str(tmp_path / "fw.pem"))[0] == 0
    creds = line.fx.credentials.directory
    package = tmp_path / "SN-F1.fgfw"
    code, out = fw(
        "fetch",
        "--credentials",
        str(creds),
        "--release",
        rid,
        "--order",
        line.order,
        "--serial",
        "SN-F1",
        "--out",
        str(package),
    )
    assert code == 0, out
    device_key = tmp_path / "device.pem"
    device_key.write_bytes(
        line.devices["SN-F1"].key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    plain = tmp_path / "out.bin"
    args = ["--device-key", str(device_key), "--serial", "SN-F1", "--firmware-key", str(tmp_path / "fw.pem")]
    code, out = fw("open", str(package), *args, "--out", str(plain))
    assert code == 0 and "verified" in out, out
    assert plain.read_bytes() == image.read_bytes()
    tampered = bytearray(package.read_bytes())
    tampered[-100] ^= 0x40
    package.write_bytes(bytes(tampered))
    code, out = fw("open", str(package), *args, "--out", str(tmp_path / "bad.bin"))
    assert code == 1 and "REJECTED" in out and not (tmp_path / "bad.bin").exists()
    code, out = fw("withdraw", rid, "--reason", "recalled")
    assert code == 0
    code, out = fw("withdraw", rid, "--reason", "recalled")
    assert code == 3 and "release_withdrawn" in " ".join(out.split())
