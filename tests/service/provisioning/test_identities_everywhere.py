"""A unit's identities appear where the unit does: the signed device manifest (JSON and CSV), the unit
listing and the CRA evidence pack's inventory (read from the ledger's ``identity.allocated`` entries)."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
from pathlib import Path

import pytest

from fabguard.firmware.sbom import validate_sbom
from fabguard.ledger.pack import AuditFailure, verify_pack
from fabguard.service.compliance import evidence_pack
from fabguard.service.core.instance import Instance
from fabguard.service.genealogy import unit_history
from fabguard.service.handoff import clouds
from fabguard.service.ledger import merkle_log
from fabguard.service.provisioning import units
from tests.service.provisioning.test_identities import POOL, allocate, prepare, provision


def test_manifest_listing_and_cra_inventory_carry_the_identities(any_instance: Instance, tmp_path: Path) -> None:
    inst = any_instance
    prepare(inst, POOL)
    given = allocate(inst)
    provision(inst, given.identity.serial)
    public = {
        "serial_index": 0,
        "mac_addresses": list(given.identity.mac_addresses),
        "matter": {
            "vendor_id": 0xFFF2,
            "product_id": 0x8001,
            "discriminator": given.to_dict()["matter"]["discriminator"],
        },  # type: ignore[index]
    }

    manifest = clouds.order_manifest(inst, "po-a", actor="test")
    [device] = manifest.body["devices"]
    assert device["identity"] == public
    text = clouds.manifest_json(manifest)
    matter = given.to_dict()["matter"]
    assert (
        isinstance(matter, dict) and matter["salt"] not in text and matter["verifier"] not in text
    )  # the label's secret
    assert '"passcode"' not in text
    [row] = list(csv.DictReader(io.StringIO(clouds.manifest_csv(manifest))))
    assert row["mac_addresses"] == " ".join(given.identity.mac_addresses)

    [listed] = units.list_units(inst, order_id="po-a")
    assert listed.identity == public

    # The unit's genealogy (the dashboard's unit page, its JSON and PDF export) names them too.
    history = unit_history.genealogy(inst, given.identity.serial)
    assert history["identities"] == [{"product_id": "sensor", "order_id": "po-a", **public}]
    assert matter["salt"] not in json.dumps(history)

    evidence_pack.export_pack(inst, tmp_path / "pack", allow_incomplete=True)
    [entry] = json.loads((tmp_path / "pack" / "certificates" / "inventory.json").read_text())
    assert entry["serial"] == given.identity.serial and entry["identity"] == public
    verify_pack(tmp_path / "pack", verifier=None, sbom_check=validate_sbom)


def test_a_pack_whose_inventory_changes_a_units_identity_fails_the_audit(instance: Instance, tmp_path: Path) -> None:
    prepare(instance, POOL)
    provision(instance, allocate(instance).identity.serial)
    pack = tmp_path / "pack"
    evidence_pack.export_pack(instance, pack, allow_incomplete=True)
    inventory = pack / "certificates" / "inventory.json"
    rows = json.loads(inventory.read_text())
    rows[0]["identity"]["mac_addresses"] = ["00:1B:63:00:00:99"]
    inventory.write_text(json.dumps(rows))
    # Someone holding the ledger key re-signs the manifest: only the history's identity entries catch it.
    manifest = json.loads((pack / "manifest.json").read_bytes())
    manifest["files"]["certificates/inventory.json"] = hashlib.sha256(inventory.read_bytes()).hexdigest()
    (pack / "manifest.json").write_text(json.dumps(manifest))
    key = merkle_log.ledger_signing_key(instance)
    (pack / "manifest.sig").write_bytes(base64.b64encode(key.sign((pack / "manifest.json").read_bytes())) + b"\n")
    with pytest.raises(AuditFailure, match="not the one the history allocated"):
        verify_pack(pack, verifier=None, sbom_check=validate_sbom)
