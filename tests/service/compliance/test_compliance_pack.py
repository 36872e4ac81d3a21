"""The CRA evidence pack: made from a real instance (provisioned, revoked and expired units, a firmware
release), it verifies offline; each kind of tampering fails verification and says what was wrong; it
holds no secret."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from typer.testing import CliRunner

from fabguard.cli.main import app
from fabguard.domain import values
from fabguard.domain.errors import Conflict
from fabguard.domain.values import OrderId, ProductId, SiteId
from fabguard.firmware.sbom import validate_sbom
from fabguard.ledger.checkpoint import verifier_key
from fabguard.ledger.pack import verify_pack
from fabguard.ledger.verify import AuditFailure
from fabguard.service.authority import revocation
from fabguard.service.catalog import orders, product_catalog
from fabguard.service.compliance import evidence_pack
from fabguard.service.core.instance import Instance
from fabguard.service.firmware import release_lifecycle
from fabguard.service.ledger import merkle_log
from tests.support import (
    PASSPHRASE,
    SO_PIN,
    TOKEN,
    USER_PIN,
    SoftHsm,
    World,
    create_pg_database,
    drop_pg_database,
    new_hsm_instance,
    new_instance,
    pg_admin_url,
    tested_device,
)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def made(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, Path, str]]:
    """One pack per engine (the tests only read it or copy it): an instance with three units (one revoked,
    one expired at export) and a firmware release."""
    url = None
    if request.param == "postgres":
        if not pg_admin_url():
            pytest.skip("FABGUARD_TEST_PG_URL is not set (scripts/test starts a PostgreSQL cluster)")
        url = create_pg_database()
    tmp = tmp_path_factory.mktemp("pack")
    inst = new_instance(tmp / "home", url)
    world = World.start(inst, tmp)
    try:
        yield _make(world, tmp)
    finally:
        world.stop()
        inst.close()
        if url:
            drop_pg_database(url)


def _make(world: World, tmp_path: Path) -> tuple[World, Path, str]:
    inst = world.inst
    product_catalog.create_product(inst, product_id=ProductId("tag"), name="Tag", cert_lifetime_days=1, actor="test")
    product_catalog.set_product_compliance(
        inst,
        ProductId("sensor"),
        support_until=date(2032, 12, 31),
        vulnerability_contact="psirt@acme.example",
        actor="t",
    )
    sensor = world.order(quota=5)
    tag = orders.create_order(
        inst, product_id=ProductId("tag"), site_id=SiteId("cm-a"), quota=1, actor="test", order_id=OrderId("po-tag")
    ).id
    fx = world.fixture("fx-1")
    for order, serial in ((sensor, "SN-C1"), (sensor, "SN-C2"), (tag, "SN-T1")):
        fx.provision(order, serial, tested_device(fx, serial).csr_pem())
    revocation.revoke_unit(inst, "SN-C2", reason_code="key_compromise", note="leaked", actor="admin")
    release = release_lifecycle.upload_release(
        inst, product_id="sensor", version="1.0.0", image=b"\x7fELF" * 64, actor="eng"
    )
    release_lifecycle.approve_release(inst, release.id, actor="approver")
    real = inst.clock
    inst.clock = lambda: real() + timedelta(days=2)  # the tag's one-day certificate has expired
    try:
        evidence_pack.export_pack(inst, tmp_path / "pack", allow_incomplete=True)  # 'tag' has no CRA facts
    finally:
        inst.clock = real
    return world, tmp_path / "pack", merkle_log.public_verifier_key(inst)


def _certificate_file(pack: Path, serial: str) -> str:
    """Where the inventory says a unit's certificate is (named by its SHA-256, not its serial)."""
    rows = json.loads((pack / "certificates/inventory.json").read_text())
    return str(next(r["certificate"] for r in rows if r["serial"] == serial))


def test_the_pack_verifies_offline_and_holds_what_it_promises(made: tuple[World, Path, str]) -> None:
    _world, pack, key = made
    report = verify_pack(pack, verifier=key, sbom_check=validate_sbom)
    assert (report.certificates, report.sboms, report.key_from_pack) == (3, 1, False)
    inventory = {r["serial"]: r for r in json.loads((pack / "certificates/inventory.json").read_text())}
    assert {s: r["status"] for s, r in inventory.items()} == {"SN-C1": "active", "SN-C2": "revoked", "SN-T1": "expired"}
    assert inventory["SN-C2"]["revocation_reason"] == "key_compromise"
    assert all(r["certificate"] == f"certificates/{r['cert_sha256']}.pem" for r in inventory.values())
    history = [
        json.loads(json.loads(line)["entry"])["kind"] for line in (pack / "history.jsonl").read_text().splitlines()
    ]
    assert history.count("unit.provisioned") == 3 and "unit.revoked" in history and "firmware.approved" in history
    cas = {c["name"]: c for c in json.loads((pack / "ca/hierarchy.json").read_text())}
    assert cas["root"]["key_algorithm"].startswith("EC ") and cas["issuing"]["key_protection"]["kind"] in (
        "encrypted-file",
        "hsm",
    )
    products = {p["id"]: p for p in json.loads((pack / "products.json").read_text())}
    assert products["sensor"]["support_until"] == "2032-12-31" and products["tag"]["support_until"] is None
    assert products["sensor"]["vulnerability_contact"] == "psirt@acme.example"
    index = json.loads((pack / "index.json").read_text())
    assert index["incomplete"]["products"] == {"tag": ["support_until", "vulnerability_contact"]}
    assert [n for n in report.notes if "--allow-incomplete" in n and "tag" in n], report.notes
    assert {"Annex I Part II (1)"} <= {r for p in index["parts"] for r in p["requirements"]}
    sbom = json.loads(next((pack / "firmware").glob("*.cdx.json")).read_text())
    assert sbom["specVersion"] == "1.6"


def test_the_pack_holds_no_key_passphrase_or_pin(made: tuple[World, Path, str]) -> None:
    world, pack, _ = made
    blob = b"".join(p.read_bytes() for p in pack.rglob("*") if p.is_file())
    for secret in (b"PRIVATE KEY", b"ENCRYPTED", PASSPHRASE.encode(), USER_PIN.encode(), world.admin_token.encode()):
        assert secret not in blob
    for key_file in (world.inst.home / "keys").glob("*.pem"):
        assert key_file.read_bytes() not in blob


def _rewrite(pack: Path, name: str, change: Callable[[bytes], bytes]) -> None:
    (pack / name).write_bytes(change((pack / name).read_bytes()))


def _resign(pack: Path, key: ed25519.Ed25519PrivateKey) -> None:
    (pack / "manifest.sig").write_bytes(base64.b64encode(key.sign((pack / "manifest.json").read_bytes())) + b"\n")


def _invalid_sbom(pack: Path, key: ed25519.Ed25519PrivateKey) -> None:
    """An SBOM made invalid, with the manifest fixed up and re-signed: only the schema check catches it."""
    sbom = next((pack / "firmware").glob("*.cdx.json"))
    doc = json.loads(sbom.read_bytes())
    doc["components"][0]["type"] = "gadget"
    sbom.write_bytes(json.dumps(doc).encode())
    manifest = json.loads((pack / "manifest.json").read_bytes())
    manifest["files"][f"firmware/{sbom.name}"] = hashlib.sha256(sbom.read_bytes()).hexdigest()
    (pack / "manifest.json").write_text(json.dumps(manifest))
    _resign(pack, key)


def _forged_release(pack: Path, key: ed25519.Ed25519PrivateKey) -> None:
    """A release manifest changed by someone holding the ledger key but not the firmware key."""
    releases = json.loads((pack / "firmware/releases.json").read_bytes())
    releases[0]["manifest"] = releases[0]["manifest"].replace('"version":"1.0.0"', '"version":"9.9.9"')
    (pack / "firmware/releases.json").write_text(json.dumps(releases))
    manifest = json.loads((pack / "manifest.json").read_bytes())
    manifest["files"]["firmware/releases.json"] = hashlib.sha256(
        (pack / "firmware/releases.json").read_bytes()
    ).hexdigest()
    (pack / "manifest.json").write_text(json.dumps(manifest))
    _resign(pack, key)


def _allowance_hidden(pack: Path, key: ed25519.Ed25519PrivateKey) -> None:
    """The signer drops the index's record that the pack was made incomplete (manifest fixed, re-signed)."""
    index = json.loads((pack / "index.json").read_bytes())
    del index["incomplete"]
    (pack / "index.json").write_text(json.dumps(index))
    manifest = json.loads((pack / "manifest.json").read_bytes())
    manifest["files"]["index.json"] = hashlib.sha256((pack / "index.json").read_bytes()).hexdigest()
    (pack / "manifest.json").write_text(json.dumps(manifest))
    _resign(pack, key)


def _linked(pack: Path, key: ed25519.Ed25519PrivateKey) -> None:
    """A listed file swapped for a symbolic link (to something endless, say): refused, never followed."""
    target = pack / _certificate_file(pack, "SN-C1")
    target.unlink()
    target.symlink_to("/dev/zero")


TAMPERING: dict[str, tuple[Callable[[Path, ed25519.Ed25519PrivateKey], None], str]] = {
    "file edited": (
        lambda p, k: _rewrite(p, "certificates/inventory.json", lambda b: b.replace(b'"revoked"', b'"active"', 1)),
        "certificates/inventory.json was altered",
    ),
    "file removed": (lambda p, k: (p / _certificate_file(p, "SN-C2")).unlink(), "missing from the pack"),
    "file added": (lambda p, k: (p / "certificates/SN-X.pem").write_text("x"), "not in the signed manifest"),
    "file replaced by a link": (_linked, "is not a plain file"),
    "manifest edited": (
        lambda p, k: _rewrite(p, "manifest.json", lambda b: b.replace(b"Acme", b"Acne", 1)),
        "signature on manifest.json does not verify",
    ),
    "manifest signature removed": (lambda p, k: (p / "manifest.sig").unlink(), "manifest.sig is missing"),
    "signed by another key": (lambda p, k: _resign(p, ed25519.Ed25519PrivateKey.generate()), "does not verify"),
    "SBOM made invalid": (_invalid_sbom, "is not valid"),
    "release manifest re-signed by the pack's signer": (_forged_release, "manifest signature does not verify"),
    "incomplete products not recorded": (_allowance_hidden, "product 'tag' lacks support_until, vulnerability_contact"),
}


@pytest.mark.parametrize("kind", list(TAMPERING))
def test_each_kind_of_tampering_fails_verification_and_says_what(
    made: tuple[World, Path, str], tmp_path: Path, kind: str
) -> None:
    world, pack, key = made
    copy = tmp_path / "copy"
    shutil.copytree(pack, copy)
    tamper, expected = TAMPERING[kind]
    ledger_key = merkle_log.ledger_signing_key(world.inst)
    tamper(copy, ledger_key)
    with pytest.raises(AuditFailure, match=expected):
        verify_pack(copy, verifier=key, sbom_check=validate_sbom)


def test_an_hsm_instance_says_its_ca_keys_are_in_the_token_and_the_pack_holds_no_pin(
    softhsm: SoftHsm, tmp_path: Path
) -> None:
    inst = new_hsm_instance(tmp_path / "home", softhsm)
    label = inst.keys.label("issuing")
    try:
        evidence_pack.export_pack(inst, tmp_path / "pack")
        report = verify_pack(tmp_path / "pack", verifier=None, sbom_check=validate_sbom)
    finally:
        inst.close()
    assert report.key_from_pack and report.notes
    cas = {c["name"]: c for c in json.loads((tmp_path / "pack/ca/hierarchy.json").read_text())}
    assert cas["issuing"]["key_protection"] == {
        "kind": "hsm",
        "interface": "PKCS#11",
        "token": TOKEN,
        "label": label,
        "extractable": False,
        "sensitive": True,
    }
    blob = b"".join(p.read_bytes() for p in (tmp_path / "pack").rglob("*") if p.is_file())
    assert USER_PIN.encode() not in blob and SO_PIN.encode() not in blob and b"PRIVATE KEY" not in blob


def test_a_pack_checked_with_the_wrong_key_fails(made: tuple[World, Path, str]) -> None:
    _, pack, _ = made
    other = verifier_key("example.com/fabguard-ledger", ed25519.Ed25519PrivateKey.generate().public_key())
    with pytest.raises(AuditFailure, match="does not verify with this ledger key"):
        verify_pack(pack, verifier=other, sbom_check=validate_sbom)


def test_an_inventory_that_lies_is_caught_even_when_re_signed(made: tuple[World, Path, str], tmp_path: Path) -> None:
    """The signer cannot mark a revoked certificate active: the history's proofs say otherwise."""
    world, pack, key = made
    copy = tmp_path / "copy"
    shutil.copytree(pack, copy)
    rows = json.loads((copy / "certificates/inventory.json").read_text())
    for r in rows:
        if r["serial"] == "SN-C2":
            r["status"], r["revocation_reason"] = "active", None
    (copy / "certificates/inventory.json").write_text(json.dumps(rows))
    manifest = json.loads((copy / "manifest.json").read_bytes())
    manifest["files"]["certificates/inventory.json"] = hashlib.sha256(
        (copy / "certificates/inventory.json").read_bytes()
    ).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    _resign(copy, merkle_log.ledger_signing_key(world.inst))
    with pytest.raises(AuditFailure, match="'SN-C2' says 'active'"):
        verify_pack(copy, verifier=key, sbom_check=validate_sbom)


def test_a_pack_whose_json_names_a_file_outside_it_fails_and_nothing_outside_is_read(
    made: tuple[World, Path, str], tmp_path: Path
) -> None:
    """Every path the pack's JSON names is one of its signed files: the verifier never reads outside the pack."""
    world, pack, key = made
    copy = tmp_path / "copy"
    shutil.copytree(pack, copy)
    name = _certificate_file(copy, "SN-C1")
    shutil.move(copy / name, tmp_path / "outside.pem")  # the certificate, moved out of the pack
    rows = json.loads((copy / "certificates/inventory.json").read_text())
    for r in rows:
        if r["certificate"] == name:
            r["certificate"] = "../outside.pem"
    (copy / "certificates/inventory.json").write_text(json.dumps(rows))
    manifest = json.loads((copy / "manifest.json").read_bytes())
    del manifest["files"][name]
    manifest["files"]["certificates/inventory.json"] = hashlib.sha256(
        (copy / "certificates/inventory.json").read_bytes()
    ).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    _resign(copy, merkle_log.ledger_signing_key(world.inst))
    with pytest.raises(AuditFailure, match=r"'\.\./outside\.pem' is not a file of the pack"):
        verify_pack(copy, verifier=key, sbom_check=validate_sbom)


def test_audit_verify_recognises_a_pack_and_export_refuses_a_used_directory(
    made: tuple[World, Path, str], tmp_path: Path
) -> None:
    world, made_pack, key = made
    pack = tmp_path / "copy"
    shutil.copytree(made_pack, pack)
    (tmp_path / "ledger.pub").write_text(key + "\n")
    runner = CliRunner()
    ok = runner.invoke(
        app, ["audit", "verify", str(pack), "--key", str(tmp_path / "ledger.pub")], env={"COLUMNS": "200"}
    )
    assert ok.exit_code == 0 and "verified" in ok.output and "compliance pack" in ok.output, ok.output
    _rewrite(pack, "products.json", lambda b: b.replace(b"psirt", b"nobody", 1))
    bad = runner.invoke(
        app, ["audit", "verify", str(pack), "--key", str(tmp_path / "ledger.pub")], env={"COLUMNS": "200"}
    )
    assert bad.exit_code == 1 and "verification FAILED" in bad.output and "products.json was altered" in bad.output
    with pytest.raises(Conflict) as used:
        evidence_pack.export_pack(world.inst, pack)
    assert used.value.code == "pack_target_exists"


def test_audit_verify_of_a_pack_without_a_key_proves_nothing_and_exits_non_zero(made: tuple[World, Path, str]) -> None:
    """As 'field verify --export' does: a pack checked with its own ledger.pub proves nothing, so it is no success."""
    _, pack, _ = made
    done = CliRunner().invoke(app, ["audit", "verify", str(pack)], env={"COLUMNS": "200"})
    assert done.exit_code == 2 and "verified" not in done.output, done.output
    assert "--key is required" in done.output and "proves nothing" in done.output


def test_a_revocation_landing_while_the_pack_is_made_keeps_the_pack_consistent(
    made: tuple[World, Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A unit revoked after the checkpoint is signed but before the units are read: the inventory says what
    the checkpoint covers (still active), so the pack verifies; the next pack shows the revocation."""
    world, _, key = made
    real = merkle_log.make_checkpoint
    calls: list[int] = []

    def checkpoint_then_revoke(inst: Instance) -> merkle_log.SignedCheckpoint:
        cp = real(inst)
        if not calls:
            revocation.revoke_unit(inst, "SN-C1", reason_code="superseded", note="meanwhile", actor="admin")
        calls.append(cp.size)
        return cp

    monkeypatch.setattr(merkle_log, "make_checkpoint", checkpoint_then_revoke)
    evidence_pack.export_pack(world.inst, tmp_path / "during", allow_incomplete=True)
    monkeypatch.setattr(merkle_log, "make_checkpoint", real)
    evidence_pack.export_pack(world.inst, tmp_path / "after", allow_incomplete=True)
    for name, status in (("during", "active"), ("after", "revoked")):
        verify_pack(tmp_path / name, verifier=key, sbom_check=validate_sbom)
        rows = json.loads((tmp_path / name / "certificates/inventory.json").read_text())
        assert {r["serial"]: r["status"] for r in rows}["SN-C1"] == status


def test_a_serial_that_reads_as_a_path_stays_inside_the_pack(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A serial stored before issue 23 refused '/' (the CM's input, made of '/' and '..') must not steer where
    the pack writes."""
    monkeypatch.setattr(values, "_SERIAL_RE", re.compile(r"[A-Za-z0-9][A-Za-z0-9.:/-]{0,63}"))  # the old rule
    fx = world.fixture("fx-1")
    serial = "SN/../../../escaped"
    fx.provision(world.order(quota=1), serial, tested_device(fx, serial).csr_pem())
    monkeypatch.undo()
    out = tmp_path / "deep" / "pack"
    out.parent.mkdir()
    evidence_pack.export_pack(world.inst, out, allow_incomplete=True)
    assert not list(tmp_path.glob("**/escaped*"))
    report = verify_pack(out, verifier=merkle_log.public_verifier_key(world.inst), sbom_check=validate_sbom)
    assert report.certificates == 1


def test_a_product_without_its_cra_facts_is_refused_by_name_and_nothing_is_written(
    made: tuple[World, Path, str], tmp_path: Path
) -> None:
    """A pack whose products.json says null for a support period or a contact is no evidence: refused,
    naming each product and what it lacks, unless asked for explicitly (then the signed index says so)."""
    world, _, _ = made
    before = merkle_log.entry_count(world.inst)
    with pytest.raises(Conflict) as refused:
        evidence_pack.export_pack(world.inst, tmp_path / "pack")
    assert refused.value.code == "product_compliance_incomplete"
    message = refused.value.message
    assert "tag" in message and "support_until" in message and "vulnerability_contact" in message, message
    assert "sensor" not in message, message  # its facts are set: only what lacks them is named
    assert "--allow-incomplete" in message and "fabguard product compliance" in message
    assert not (tmp_path / "pack").exists() and merkle_log.entry_count(world.inst) == before


def test_a_complete_catalogue_exports_without_the_flag_and_records_nothing(world: World, tmp_path: Path) -> None:
    product_catalog.set_product_compliance(
        world.inst,
        ProductId("sensor"),
        support_until=date(2031, 12, 31),
        vulnerability_contact="psirt@acme.example",
        actor="t",
    )
    evidence_pack.export_pack(world.inst, tmp_path / "pack")
    assert "incomplete" not in json.loads((tmp_path / "pack/index.json").read_text())
    report = verify_pack(
        tmp_path / "pack", verifier=merkle_log.public_verifier_key(world.inst), sbom_check=validate_sbom
    )
    assert not [n for n in report.notes if "incomplete" in n]
