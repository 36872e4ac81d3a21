"""``fabguard-station allocate`` and ``provision`` write the unit's identities where the line needs them:
SERIAL.identity.json with the serial, MAC addresses and Matter onboarding data."""

from __future__ import annotations

import json
import random
from pathlib import Path

from fabguard.domain.identities.pools import pool_from_json
from fabguard.domain.issuance import FixtureFacts
from fabguard.domain.values import ProductId
from fabguard.fixture.device import SimulatedDevice
from fabguard.fixture.openhtf_records import openhtf_record
from fabguard.service.catalog import identity_pools
from fabguard.service.provisioning import testrecords
from tests.station.conftest import Station
from tests.support import World

POOL = {
    "serials": {"prefix": "LN-", "width": 4, "check": "luhn-mod-36", "required": True},
    "macs": {"prefix": "70-B3-D5-7A-9", "per_unit": 2},
    "matter": {"vendor_id": 65521, "product_id": 32768, "iterations": 1000},
}


def test_allocate_then_provision_write_the_units_identity(world: World, station: Station, tmp_path: Path) -> None:
    identity_pools.set_pools(world.inst, ProductId("sensor"), pool_from_json(POOL), actor="test")
    order = world.order(quota=2)
    assert station.enroll(world, "fx-line1").code == 0
    out = tmp_path / "line"
    given = station.run("allocate", "--order", order, "--out", out, "--json")
    assert given.code == 0, given.stdout + given.stderr
    serial = given.json["serial"]
    written = json.loads(Path(given.json["identity"]).read_text())
    assert written["serial"] == serial and written["mac_addresses"] == ["70:B3:D5:7A:90:00", "70:B3:D5:7A:90:01"]
    assert written["matter"]["qr_code"].startswith("MT:") and written["matter"]["iterations"] == 1000
    assert Path(given.json["identity"]) == out / f"{serial}.identity.json"

    fixture = FixtureFacts("fx-line1", "cm-a", False)
    testrecords.record_tests(
        world.inst, fixture, [openhtf_record(serial, "fx-line1", fail=False, rng=random.Random(3))]
    )
    csr = tmp_path / "unit.csr"
    csr.write_text(SimulatedDevice(serial).csr_pem())
    certs = tmp_path / "certs"
    done = station.run("provision", "--order", order, "--serial", serial, "--csr", csr, "--out", certs, "--json")
    assert done.code == 0, done.stdout + done.stderr
    assert json.loads(Path(done.json["identity"]).read_text())["matter"] == written["matter"]

    refused = station.run("allocate", "--order", order, "--serial", "MY-OWN", "--out", out, "--json")
    assert refused.code == 3 and refused.json["error"]["code"] == "allocation_serial_invalid"
