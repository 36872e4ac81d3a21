"""``fabguard-station matter-partition``: an ESP32 Matter factory data partition made by esp-matter-mfg-tool
(run from its own venv, never imported) from the unit's FabGuard identity and DAC; the tool recomputes
the SPAKE2+ verifier from our passcode and salt and refuses one that differs, so a partition made is one
whose verifier is right."""

from __future__ import annotations

import base64
import csv
import json
import random
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fabguard.domain.identities.pools import pool_from_json
from fabguard.domain.issuance import FixtureFacts
from fabguard.domain.values import CaName, ProductId, SiteId
from fabguard.fixture.device import SimulatedDevice
from fabguard.fixture.openhtf_records import openhtf_record
from fabguard.service.approvals import requests
from fabguard.service.authority.ca_acts import MatterPaiCreation
from fabguard.service.catalog import identity_pools, orders, product_catalog
from fabguard.service.provisioning import testrecords
from tests.pki.test_matter_oracle import _tool as oracle_tool
from tests.station.conftest import Station
from tests.support import REQUESTER, World, second_person_approves


def test_a_units_identity_and_dac_become_its_factory_partition(world: World, station: Station, tmp_path: Path) -> None:
    tool = oracle_tool()  # skipped when the tool is missing, failed under CI
    # A DAC within its PAI's validity (the tool checks the chain nests): the product's lifetime bounds it.
    product_catalog.create_product(
        world.inst, product_id=ProductId("bulb"), name="Smart Bulb", cert_lifetime_days=3650, actor="t"
    )
    asked = requests.request(
        world.inst, CaName("pai-bulb").value, MatterPaiCreation("bulb", 0xFFF1, 0x8000), by=REQUESTER
    )
    second_person_approves(world.inst, asked)
    pool = {
        "serials": {"prefix": "BULB-", "width": 5, "required": True},
        "matter": {"vendor_id": 0xFFF1, "product_id": 0x8000, "iterations": 1000},
    }
    identity_pools.set_pools(world.inst, ProductId("bulb"), pool_from_json(pool), actor="t")
    order = orders.create_order(world.inst, product_id=ProductId("bulb"), site_id=SiteId("cm-a"), quota=2, actor="t").id
    assert station.enroll(world, "fx-line1").code == 0
    line = tmp_path / "line"
    given = station.run("allocate", "--order", order, "--out", line, "--json")
    assert given.code == 0, given.stdout + given.stderr
    serial = given.json["serial"]
    fixture = FixtureFacts("fx-line1", "cm-a", False)
    testrecords.record_tests(
        world.inst, fixture, [openhtf_record(serial, "fx-line1", fail=False, rng=random.Random(4))]
    )
    device = SimulatedDevice(serial)
    (tmp_path / "unit.csr").write_text(device.csr_pem())
    key = tmp_path / "dac-key.pem"
    key.write_bytes(
        device.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    done = station.run("provision", "--order", order, "--serial", serial, "--csr", tmp_path / "unit.csr", "--out", line)
    assert done.code == 0, done.stdout + done.stderr

    made = station.run(
        "matter-partition",
        "--identity", line / f"{serial}.identity.json",
        "--certificate", line / f"{serial}.pem",
        "--chain", line / f"{serial}.chain.pem",
        "--key", key,
        "--tool", tool,
        "--out", tmp_path / "factory",
        "--json",
        timeout=300,
    )  # fmt: skip
    assert made.code == 0, made.stdout + made.stderr
    binary = Path(made.json["partition"])
    assert binary.is_file() and binary.stat().st_size == 0x6000  # the tool's default partition size
    with Path(made.json["partition_csv"]).open(newline="") as f:
        written = {row["key"]: row["value"] for row in csv.DictReader(f)}
    identity = json.loads((line / f"{serial}.identity.json").read_text())["matter"]
    assert base64.b64decode(written["verifier"]) == base64.b64decode(identity["verifier"])
    assert base64.b64decode(written["salt"]) == base64.b64decode(identity["salt"])
    assert int(written["iteration-count"]) == 1000 and int(written["discriminator"]) == identity["discriminator"]
    dac = x509.load_pem_x509_certificate((line / f"{serial}.pem").read_bytes())
    assert dac.not_valid_after_utc.year < 9999  # the product's ten years
    assert written["serial-num"] == serial and (written["vendor-id"], written["product-id"]) == ("65521", "32768")
    assert Path(written["dac-cert"]).read_bytes() == dac.public_bytes(serialization.Encoding.DER)
    assert dac.public_key() == device.key.public_key()
    assert Path(written["dac-cert"]).read_bytes() in binary.read_bytes()  # the NVS image holds our DAC

    # A verifier that is not the passcode's: the tool refuses, and the station says so (exit 5).
    wrong = json.loads((line / f"{serial}.identity.json").read_text())
    wrong["matter"]["passcode"] = 20202021 if wrong["matter"]["passcode"] != 20202021 else 20202022
    (tmp_path / "wrong.json").write_text(json.dumps(wrong))
    refused = station.run(
        "matter-partition",
        "--identity", tmp_path / "wrong.json",
        "--certificate", line / f"{serial}.pem",
        "--chain", line / f"{serial}.chain.pem",
        "--key", key,
        "--tool", tool,
        "--out", tmp_path / "wrong",
        "--json",
        timeout=300,
    )  # fmt: skip
    assert refused.code == 5 and refused.json["error"]["code"] == "matter_partition_failed", refused.stdout
