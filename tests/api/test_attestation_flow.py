"""Key attestation end to end: the admin API sets a product's policy and trusted roots, a fixture sends
each unit's attestation through the SDK over real HTTPS, and every refusal is an event that consumes nothing.

The TPM is a real software TPM (swtpm); the TPM maker's and the SE vendor's CAs are made for the test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from fabguard.domain.errors import Refusal
from fabguard.fixture.client import FabGuardClientError, FixtureClient
from fabguard.service.catalog import orders
from fabguard.service.core import events
from fabguard.service.provisioning import reenrolment
from fabguard.store.models import Unit
from tests.support import World, tested_device
from tests.tpm_support import (
    SoftwareTpm,
    TestCa,
    csr_for,
    pem,
    running_tpm,
    tpm_unit,
)


@pytest.fixture(scope="module")
def software_tpm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftwareTpm]:
    with running_tpm(tmp_path_factory.mktemp("swtpm")) as tpm:
        yield tpm


def refused(fx: FixtureClient, order: str, serial: str, csr_pem: str, attestation: Any = None) -> tuple[int, str]:
    with pytest.raises(FabGuardClientError) as info:
        fx.provision(order, serial, csr_pem, attestation=attestation)
    return info.value.status, info.value.code


def configure(admin: httpx.Client, policy: str, roots: list[tuple[str, TestCa]]) -> None:
    assert admin.put("/api/v1/products/sensor/attestation", json={"policy": policy}).status_code == 200
    for kind, ca in roots:
        answer = admin.post("/api/v1/products/sensor/attestation/roots", json={"kind": kind, "certificate": ca.pem})
        assert answer.status_code == 201, answer.text


def unit_attestation(world: World, serial: str) -> dict[str, Any] | None:
    with world.inst.db.read() as s:
        recorded = s.execute(select(Unit.attestation).where(Unit.serial == serial)).scalar_one()
    return None if recorded is None else dict(json.loads(recorded))


def test_required_tpm_attestation_refuses_each_forgery_for_free_then_issues_and_records_it(
    any_world: World, software_tpm: SoftwareTpm
) -> None:
    maker = TestCa.make("Test TPM maker AK CA")
    ak = maker.issue_ak("AK", software_tpm.ak_public())
    with any_world.admin() as admin:
        configure(admin, "required", [("tpm", maker)])
    order = any_world.order(quota=5)
    fx = any_world.fixture("fx-1")
    tested_device(fx, "SN-A1")
    tested_device(fx, "SN-A2")
    good = tpm_unit(software_tpm, "SN-A1")
    software_csr = pem_of(csr_for("SN-A1", ec.generate_private_key(ec.SECP256R1())))
    stranger_ak = TestCa.make("Somebody's AK CA").issue_ak("AK", software_tpm.ak_public())

    assert refused(fx, order, "SN-A1", good.csr_pem) == (403, "attestation_missing")
    assert refused(fx, order, "SN-A1", software_csr, good.attestation([ak])) == (400, "attestation_invalid")
    assert refused(fx, order, "SN-A1", good.csr_pem, good.attestation([stranger_ak])) == (403, "attestation_untrusted")
    assert orders.get_order(any_world.inst, order).used == 0

    issued = fx.provision(order, "SN-A1", good.csr_pem, attestation=good.attestation([ak]))
    # The same attestation again, for another unit's request: bound to the first CSR, so refused.
    replay_csr = pem_of(csr_for("SN-A2", ec.generate_private_key(ec.SECP256R1())))
    assert refused(fx, order, "SN-A2", replay_csr, good.attestation([ak])) == (400, "attestation_invalid")

    view = orders.get_order(any_world.inst, order)
    assert view.used == 1
    assert view.refused == {"attestation_missing": 1, "attestation_invalid": 2, "attestation_untrusted": 1}
    recorded = unit_attestation(any_world, "SN-A1")
    assert recorded is not None and recorded["format"] == "tpm2-certify"
    assert recorded["root_subject"] == "CN=Test TPM maker AK CA" and recorded["key_name"].startswith("000b")
    (event,) = events.list_events(any_world.inst, kind="unit.provisioned")
    assert event["detail"]["attestation"] == recorded
    with any_world.admin() as admin:
        (listed,) = admin.get(f"/api/v1/orders/{order}/units").json()
    assert listed["attestation"] == recorded
    refusals = events.list_events(any_world.inst, kind="unit.refused")
    assert [e["code"] for e in refusals] == [
        "attestation_missing",
        "attestation_invalid",
        "attestation_untrusted",
        "attestation_invalid",
    ]
    assert "replayed" in refusals[-1]["detail"]["message"]
    assert issued.certificate_pem and not issued.replayed


def test_policy_off_ignores_any_attestation_and_records_none(world: World) -> None:
    order = world.order(quota=2)
    fx = world.fixture("fx-1")
    device = tested_device(fx, "SN-O1")
    fx.provision(order, "SN-O1", device.csr_pem(), attestation={"format": "nonsense"})
    assert unit_attestation(world, "SN-O1") is None
    (event,) = events.list_events(world.inst, kind="unit.provisioned")
    assert "attestation" not in event["detail"]


def test_optional_policy_issues_without_one_and_checks_an_se_chain_when_presented(world: World) -> None:
    vendor = TestCa.make("Test SE vendor root")
    signer = TestCa.make("Test SE signer", issuer=vendor)
    with world.admin() as admin:
        configure(admin, "optional", [("se", vendor)])
    order = world.order(quota=4)
    fx = world.fixture("fx-1")
    plain, se_unit, wrong = (tested_device(fx, s) for s in ("SN-P1", "SN-P2", "SN-P3"))
    fx.provision(order, "SN-P1", plain.csr_pem())
    chain = [pem(signer.issue("se-device", se_unit.key.public_key())), pem(signer.cert)]
    fx.provision(order, "SN-P2", se_unit.csr_pem(), attestation={"format": "se-chain", "chain": chain})
    # A presented attestation is checked even when optional: another device's SE chain is refused.
    attestation = {"format": "se-chain", "chain": chain}
    assert refused(fx, order, "SN-P3", wrong.csr_pem(), attestation) == (400, "attestation_invalid")

    # A batch passes each unit's attestation through too.
    batch_unit = tested_device(fx, "SN-P4")
    batch_chain = [pem(signer.issue("se-device-4", batch_unit.key.public_key())), pem(signer.cert)]
    other = tested_device(fx, "SN-P5")
    results = fx.provision_batch(
        order,
        [
            ("SN-P4", batch_unit.csr_pem(), {"format": "se-chain", "chain": batch_chain}),
            ("SN-P5", other.csr_pem(), {"format": "se-chain", "chain": batch_chain}),
        ],
    )
    assert [(r["status"], r.get("error", {}).get("code")) for r in results] == [
        ("issued", None),
        ("refused", "attestation_invalid"),
    ]
    assert unit_attestation(world, "SN-P4") is not None

    assert unit_attestation(world, "SN-P1") is None
    recorded = unit_attestation(world, "SN-P2")
    assert recorded is not None and (recorded["format"], recorded["root_subject"]) == (
        "se-chain",
        "CN=Test SE vendor root",
    )
    assert orders.get_order(world.inst, order).used == 3


def test_the_admin_api_sets_the_policy_and_keeps_the_roots(world: World) -> None:
    vendor = TestCa.make("Test SE vendor root")
    leaf = vendor.issue("not a CA", ec.generate_private_key(ec.SECP256R1()).public_key())
    base = "/api/v1/products/sensor/attestation"
    with world.admin() as admin:
        assert admin.get(base).json() == {"product_id": "sensor", "policy": "off", "roots": []}
        assert admin.put(base, json={"policy": "always"}).json()["error"]["code"] == "invalid_request"
        added = admin.post(f"{base}/roots", json={"kind": "se", "certificate": vendor.pem})
        assert added.status_code == 201
        again = admin.post(f"{base}/roots", json={"kind": "se", "certificate": vendor.pem})
        assert (again.status_code, again.json()["error"]["code"]) == (409, "attestation_root_exists")
        not_ca = admin.post(f"{base}/roots", json={"kind": "se", "certificate": pem(leaf)})
        assert (not_ca.status_code, not_ca.json()["error"]["code"]) == (422, "certificate_not_ca")
        bad_kind = admin.post(f"{base}/roots", json={"kind": "hsm", "certificate": vendor.pem})
        assert bad_kind.json()["error"]["code"] == "invalid_request"
        assert admin.put(base, json={"policy": "required"}).json()["policy"] == "required"
        shown = admin.get(base).json()
        assert [(r["kind"], r["sha256"]) for r in shown["roots"]] == [("se", added.json()["sha256"])]
        assert admin.delete(f"{base}/roots/{added.json()['sha256']}").status_code == 204
        gone = admin.delete(f"{base}/roots/{added.json()['sha256']}")
        assert (gone.status_code, gone.json()["error"]["code"]) == (404, "attestation_root_not_found")
        missing = admin.get("/api/v1/products/nothing/attestation")
        assert (missing.status_code, missing.json()["error"]["code"]) == (404, "product_not_found")
    kinds = [e["kind"] for e in events.list_events(world.inst) if e["kind"].startswith("product.attestation")]
    assert kinds == [
        "product.attestation_root_added",
        "product.attestation_policy_set",
        "product.attestation_root_removed",
    ]


def pem_of(csr: Any) -> str:
    return str(csr.public_bytes(serialization.Encoding.PEM).decode())


def test_a_required_product_renews_a_unit_on_its_attested_key_but_not_onto_a_new_one(world: World) -> None:
    vendor = TestCa.make("Test SE vendor root")
    with world.admin() as admin:
        configure(admin, "required", [("se", vendor)])
    order = world.order(quota=1)
    fx = world.fixture("fx-1")
    device = tested_device(fx, "SN-R1")
    chain = [pem(vendor.issue("se-device", device.key.public_key())), vendor.pem]
    issued = fx.provision(order, "SN-R1", device.csr_pem(), attestation={"format": "se-chain", "chain": chain})
    current = x509.load_pem_x509_certificate(issued.certificate_pem.encode()).public_bytes(serialization.Encoding.DER)

    renewed = reenrolment.reenroll_unit(world.inst, current, device.csr_pem().encode())
    assert unit_attestation(world, "SN-R1") is not None  # the same key: what backed it still holds
    again = x509.load_pem_x509_certificate(renewed.certificate_pem.encode()).public_bytes(serialization.Encoding.DER)
    new_key_csr = pem_of(csr_for("SN-R1", ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(Refusal) as info:
        reenrolment.reenroll_unit(world.inst, again, new_key_csr.encode())
    assert info.value.code == "attestation_missing"
    assert [e["code"] for e in events.list_events(world.inst, kind="reenroll.refused")] == ["attestation_missing"]
