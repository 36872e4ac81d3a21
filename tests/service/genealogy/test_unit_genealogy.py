"""Unit search and genealogy over the API: a serial's whole history, its ledger entries proven against
the signed checkpoint, as JSON and PDF, and an operator's view of its own site only."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from fabguard.domain.identities.pools import pool_from_json
from fabguard.domain.issuance import FixtureFacts
from fabguard.domain.values import OrderId, ProductId, Role, Serial, SiteId
from fabguard.ledger import merkle
from fabguard.service.access import tokens
from fabguard.service.catalog import identity_pools, orders, product_catalog
from fabguard.service.ledger import merkle_log
from fabguard.service.provisioning.allocation import Allocated, allocate_unit
from tests.support import World, tested_device


def _get(world: World, path: str, token: str | None = None, **params: str) -> Any:
    with world.admin() as admin:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return admin.get(path, params=params, headers=headers)


def test_a_units_genealogy_holds_its_tests_decisions_certificate_field_checks_and_proven_entries(
    any_world: World,
) -> None:
    order = any_world.order(5, order_id="po-gen")
    line = any_world.fixture("f1")
    device = tested_device(line, "SN-GEN-0001", passed=False, seed=3)
    with pytest.raises(Exception, match="test"):
        line.provision(order, device.serial, device.csr_pem())  # refused: its latest test failed
    tested_device(line, "SN-GEN-0001", seed=4)
    device.certificate_pem = line.provision(order, device.serial, device.csr_pem()).certificate_pem
    tested_device(line, "SN-GEN-0002", seed=5)
    with any_world.admin() as admin:
        nonce = admin.post("/api/v1/field/challenge").json()["nonce"]
        assert admin.post("/api/v1/field/verify", json=device.field_answer(nonce, source="store-1")).json()["genuine"]
    merkle_log.make_checkpoint(any_world.inst)

    found = _get(any_world, "/api/v1/units/search", q="SN-GEN").json()
    assert found["serials"] == ["SN-GEN-0001", "SN-GEN-0002"]
    assert _get(any_world, "/api/v1/units/search", q="SN-GEN-0002").json()["serials"] == ["SN-GEN-0002"]

    g = _get(any_world, "/api/v1/units/SN-GEN-0001/genealogy").json()
    [unit] = g["units"]
    assert (unit["order_id"], unit["site_id"], unit["made_by"]) == (
        order,
        "cm-a",
        {"kind": "fixture", "fixture_id": "f1"},
    )
    assert unit["certificate"]["pem"].strip() == device.certificate_pem.strip()
    assert [r["outcome"] for r in g["test_records"]] == ["FAIL", "PASS"]
    steps = g["test_records"][1]["steps"]
    assert steps and all(m["outcome"] == "PASS" for s in steps for m in s["measurements"])
    assert any(m["name"] == "vcc_3v3" and m["lower"] == 3.2 for s in steps for m in s["measurements"])
    kinds = [e["kind"] for e in g["decisions"]]
    assert "unit.refused" in kinds and "unit.provisioned" in kinds
    assert [c["place"] for c in g["field_checks"]] == ["store-1"] and g["field_checks"][0]["genuine"]
    assert g["identities"] == []  # its product declares no identity pools
    # Every entry is proven against the signed checkpoint, which the export carries.
    checkpoint = g["ledger"]["checkpoint"]
    assert checkpoint and g["ledger"]["entries"]
    for e in g["ledger"]["entries"]:
        proof = e["inclusion"]
        assert (
            proof["checkpointed"] and proof["tree_size"] == checkpoint["size"] and proof["root"] == checkpoint["root"]
        )
        merkle.verify_inclusion(
            merkle.leaf_hash(proof["entry"].encode()),
            e["index"],
            proof["tree_size"],
            [base64.b64decode(h) for h in proof["proof"]],
            base64.b64decode(checkpoint["root"]),
        )

    pdf = _get(any_world, "/api/v1/units/SN-GEN-0001/genealogy.pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF") and b"SN-GEN-0001" in pdf.headers["content-disposition"].encode()

    missing = _get(any_world, "/api/v1/units/SN-NOPE/genealogy")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "unit_not_found")
    bad = _get(any_world, "/api/v1/units/search", q=" ")
    assert (bad.status_code, bad.json()["error"]["code"]) == (422, "invalid_serial_query")


def test_an_operator_finds_and_reads_its_own_sites_units_only(any_world: World) -> None:
    order = any_world.order(5, order_id="po-a")
    a = tested_device(any_world.fixture("fa"), "SN-A-1", seed=1)
    any_world.clients[0].provision(order, a.serial, a.csr_pem())
    tested_device(any_world.fixture("fb", site="cm-b"), "SN-B-1", seed=2)
    made = {
        site: tokens.create_token(any_world.inst, name=site, role=Role.OPERATOR, site_id=SiteId(site), actor="t")[1]
        for site in ("cm-a", "cm-b")
    }
    assert _get(any_world, "/api/v1/units/search", made["cm-a"], q="SN-").json()["serials"] == ["SN-A-1"]
    assert _get(any_world, "/api/v1/units/search", made["cm-b"], q="SN-").json()["serials"] == ["SN-B-1"]
    mine = _get(any_world, "/api/v1/units/SN-A-1/genealogy", made["cm-a"]).json()
    assert mine["site_id"] == "cm-a" and mine["units"] and mine["field_checks"] == [] and mine["licences"] == []
    theirs = _get(any_world, "/api/v1/units/SN-A-1/genealogy", made["cm-b"])
    assert (theirs.status_code, theirs.json()["error"]["code"]) == (404, "unit_not_found")
    assert _get(any_world, "/api/v1/units/SN-A-1/genealogy.pdf", made["cm-b"]).status_code == 404


def test_a_unit_back_from_the_field_is_found_by_what_it_shows(any_world: World) -> None:
    """A MAC address from its label, its certificate's serial number or SHA-256 fingerprint (as openssl prints
    them), its key's fingerprint: each finds the unit, in any case and with or without separators; another
    site's operator finds nothing, and a query that names nothing finds nothing."""
    identity_pools.set_pools(
        any_world.inst,
        ProductId("sensor"),
        pool_from_json({"macs": {"prefix": "00-1B-63", "per_unit": 1, "first": 16, "count": 8}}),
        actor="test",
    )
    order = any_world.order(5, order_id="po-field")
    line = any_world.fixture("f1")
    drawn = allocate_unit(any_world.inst, FixtureFacts("f1", "cm-a", False), OrderId(order), Serial("SN-FIELD-1"))
    assert isinstance(drawn, Allocated)
    [mac] = drawn.identity.mac_addresses
    device = tested_device(line, "SN-FIELD-1", seed=11)
    pem = line.provision(order, device.serial, device.csr_pem()).certificate_pem
    cert = x509.load_pem_x509_certificate(pem.encode())
    serial_hex = format(cert.serial_number, "X")
    sha = cert.fingerprint(hashes.SHA256()).hex()
    spki = hashlib.sha256(
        cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ).hexdigest()
    tested_device(line, "SN-FIELD-2", seed=12)  # tested, never provisioned: no identifier names it

    def found(q: str, token: str | None = None) -> list[str]:
        answer = _get(any_world, "/api/v1/units/search", token, q=q)
        assert answer.status_code == 200, answer.text
        return list(answer.json()["serials"])

    for q in (
        str(mac),  # as the pool writes it
        str(mac).replace("-", ":").lower(),
        str(mac).replace("-", ""),
        serial_hex,
        f"serial={serial_hex}",  # openssl x509 -noout -serial, as pasted
        "sha256 Fingerprint=" + ":".join(sha[i : i + 2] for i in range(0, 64, 2)).upper(),
        "00" + serial_hex.lower(),
        ":".join(sha[i : i + 2] for i in range(0, 64, 2)).upper(),  # openssl x509 -fingerprint -sha256
        sha,
        spki,
    ):
        assert found(q) == ["SN-FIELD-1"], q
    assert found("SN-FIELD") == ["SN-FIELD-1", "SN-FIELD-2"]  # a serial's start, as before
    assert found("00:1B:63:00:00:FF") == [] and found(sha[:-1] + "0" if sha[-1] != "0" else sha[:-1] + "1") == []
    others = tokens.create_token(any_world.inst, name="b", role=Role.OPERATOR, site_id=SiteId("cm-b"), actor="t")[1]
    mine = tokens.create_token(any_world.inst, name="a", role=Role.OPERATOR, site_id=SiteId("cm-a"), actor="t")[1]
    assert found(str(mac), others) == [] and found(sha, others) == []
    assert found(str(mac), mine) == ["SN-FIELD-1"]
    assert found(":".join(sha[i : i + 2] for i in range(0, 64, 2)) + ":00") == []  # too long for a fingerprint
    g = _get(any_world, f"/api/v1/units/{found(serial_hex)[0]}/genealogy").json()
    assert g["units"][0]["certificate"]["pem"].strip() == pem.strip()
    assert [i["mac_addresses"] for i in g["identities"]] == [[str(mac)]]
    # Identities drawn, the unit not provisioned yet: its MAC finds it, and its page shows what was drawn.
    later = allocate_unit(any_world.inst, FixtureFacts("f1", "cm-a", False), OrderId(order), Serial("SN-FIELD-3"))
    assert isinstance(later, Allocated)
    [later_mac] = later.identity.mac_addresses
    assert found(str(later_mac)) == ["SN-FIELD-3"] and found(str(later_mac), mine) == ["SN-FIELD-3"]
    drawn = _get(any_world, "/api/v1/units/SN-FIELD-3/genealogy").json()
    assert drawn["units"] == [] and [i["mac_addresses"] for i in drawn["identities"]] == [[str(later_mac)]]
    theirs = _get(any_world, "/api/v1/units/SN-FIELD-3/genealogy", others)
    assert (theirs.status_code, theirs.json()["error"]["code"]) == (404, "unit_not_found")
    # The same serial made at cm-b under another product: cm-b's operator sees that unit, never the MAC drawn
    # for cm-a's.
    product_catalog.create_product(any_world.inst, product_id=ProductId("bulb"), name="Bulb", actor="test")
    bulbs = orders.create_order(
        any_world.inst, product_id=ProductId("bulb"), site_id=SiteId("cm-b"), quota=2, actor="test"
    ).id
    b_line = any_world.fixture("fb", site="cm-b")
    twin = tested_device(b_line, "SN-FIELD-1", seed=13)
    b_line.provision(bulbs, twin.serial, twin.csr_pem())
    at_b = _get(any_world, "/api/v1/units/SN-FIELD-1/genealogy", others).json()
    assert [u["product_id"] for u in at_b["units"]] == ["bulb"] and at_b["identities"] == []
