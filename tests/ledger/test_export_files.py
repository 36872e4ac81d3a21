"""A ledger export names every certificate file safely, so a serial never steers where it writes: serials
stored before issue 23 made them identifiers (``A/../../x``, ``SN/77``) still export, under encoded names
the manifest maps back to them, and the export verifies."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fabguard.domain import values
from fabguard.domain.errors import Conflict
from fabguard.domain.values import OrderId, ProductId, SiteId
from fabguard.ledger.verify import AuditFailure, verify_export
from fabguard.service.authority import revocation
from fabguard.service.catalog import orders, product_catalog
from fabguard.service.core.instance import Instance
from fabguard.service.ledger import merkle_log
from fabguard.service.provisioning import reenrolment
from tests.support import World, tested_device

OLD_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:/-]{0,63}")  # the serial syntax before issue 23


def _provision_under_the_old_rule(world: World, monkeypatch: pytest.MonkeyPatch, units: list[tuple[str, str]]) -> None:
    """What a server before issue 23 accepted and stored: (order, serial) pairs, then the new rule again."""
    monkeypatch.setattr(values, "_SERIAL_RE", OLD_RULE)
    fx = world.fixture("fx-1")
    for order, serial in units:
        fx.provision(order, serial, tested_device(fx, serial).csr_pem())
    monkeypatch.undo()


def test_serials_stored_before_the_rule_export_under_encoded_names_and_verify(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = world.order(quota=5)
    _provision_under_the_old_rule(world, monkeypatch, [(order, "A/../../x"), (order, "SN/77"), (order, "ACME:1")])
    out = tmp_path / "deep" / "export"
    out.parent.mkdir()
    manifest = merkle_log.export(world.inst, out)
    files = manifest["certificate_files"]
    assert isinstance(files, dict)
    assert {name: unit["serial"] for name, unit in files.items()} == {
        "certs/A%2F..%2F..%2Fx.pem": "A/../../x",
        "certs/SN%2F77.pem": "SN/77",
        "certs/ACME%3A1.pem": "ACME:1",
    }
    assert sorted(p.name for p in (out / "certs").iterdir()) == sorted(n.removeprefix("certs/") for n in files)
    assert not list(tmp_path.glob("**/x.pem")) and not list(tmp_path.glob("**/77.pem"))
    report = verify_export(out, verifier=merkle_log.public_verifier_key(world.inst))
    assert report.certificates_checked == 3
    # Such a unit stays what it was: provable and revocable by its serial.
    assert merkle_log.index_of_unit(world.inst, serial="SN/77") >= 0
    revocation.revoke_unit(world.inst, "SN/77", reason_code="unspecified", note="old serial", actor="test")


def test_names_that_would_clash_carry_the_certificates_digest(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One serial in two products, or two serials that differ only in case (one file on a case-insensitive
    file system): each such file's name carries its certificate's digest, and the export still verifies."""
    product_catalog.create_product(world.inst, product_id=ProductId("tag"), name="Tag", actor="test")
    tag = orders.create_order(
        world.inst, product_id=ProductId("tag"), site_id=SiteId("cm-a"), quota=5, actor="test", order_id=OrderId("po-t")
    ).id
    sensor = world.order(quota=5)
    _provision_under_the_old_rule(
        world, monkeypatch, [(sensor, "SN-1"), (tag, "SN-1"), (sensor, "sn-2"), (sensor, "SN-2"), (sensor, "SN-3")]
    )
    manifest = merkle_log.export(world.inst, tmp_path / "export")
    files = manifest["certificate_files"]
    assert isinstance(files, dict)
    plain = sorted(name for name in files if "~" not in name)
    assert plain == ["certs/SN-3.pem"]
    clashing = sorted(name for name in files if "~" in name)
    assert len(clashing) == 4 and all(re.fullmatch(r"certs/(SN-1|sn-2|SN-2)~[0-9a-f]{16}\.pem", n) for n in clashing)
    assert len({n.lower() for n in files}) == 5
    assert (
        verify_export(tmp_path / "export", verifier=merkle_log.public_verifier_key(world.inst)).certificates_checked
        == 5
    )


def test_an_export_is_written_only_into_a_new_or_empty_folder(world: World, tmp_path: Path) -> None:
    """An earlier export's files left in the folder would be extra files the audit refuses."""
    merkle_log.export(world.inst, tmp_path / "export")
    with pytest.raises(Conflict) as used:
        merkle_log.export(world.inst, tmp_path / "export")
    assert used.value.code == "export_target_exists"


def test_a_unit_re_enrolled_while_the_export_is_made_is_exported_at_a_newer_checkpoint(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its certificate changed after the checkpoint was signed: the export signs a newer one and holds the unit's
    current certificate; a file holding the certificate the re-enrolment superseded fails the audit."""
    fx = world.fixture("fx-1")
    device = tested_device(fx, "SN-R1")
    old_pem = fx.provision(world.order(quota=1), "SN-R1", device.csr_pem()).certificate_pem
    old_der = x509.load_pem_x509_certificate(old_pem.encode()).public_bytes(serialization.Encoding.DER)
    real = merkle_log.make_checkpoint
    sizes: list[int] = []

    def checkpoint_then_reenrol(inst: Instance) -> merkle_log.SignedCheckpoint:
        cp = real(inst)
        if not sizes:
            reenrolment.reenroll_unit(inst, old_der, device.csr_pem().encode())
        sizes.append(cp.size)
        return cp

    monkeypatch.setattr(merkle_log, "make_checkpoint", checkpoint_then_reenrol)
    manifest = merkle_log.export(world.inst, tmp_path / "export")
    assert len(sizes) == 2 and sizes[1] == sizes[0] + 1 and manifest["tree_size"] == sizes[1]
    key = merkle_log.public_verifier_key(world.inst)
    assert verify_export(tmp_path / "export", verifier=key).certificates_checked == 1
    assert (tmp_path / "export" / "certs" / "SN-R1.pem").read_text() != old_pem
    (tmp_path / "export" / "certs" / "SN-R1.pem").write_text(old_pem)
    with pytest.raises(AuditFailure, match=r"certs/SN-R1\.pem holds a certificate of unit SN-R1 .* superseded"):
        verify_export(tmp_path / "export", verifier=key)
