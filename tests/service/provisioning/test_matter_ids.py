"""A Matter unit's onboarding payload and its DAC name the same vendor and product (docs/identities.md,
"The pool's Matter IDs and the product's PAI"): a commissioner checks the DAC's VID and PID against the
device's Basic Information and the Certification Declaration, so a unit whose QR code says one product and
whose DAC says another never joins a fabric.

The DAC's VID and PID come from its PAI's subject (``unit_requests.device_certificate``); the onboarding
payload's from the product's Matter pool. Here they are read back from what a unit really gets: the DAC
parsed, and the QR code decoded by a base38 decoder of this test's own (Matter 5.1.3), checked on the CHIP
SDK's published payload."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from cryptography import x509
from sqlalchemy import func, select

from fabguard.api.parsing import unit_request
from fabguard.domain.errors import FabGuardError
from fabguard.domain.identities.pools import pool_from_json
from fabguard.domain.issuance import FixtureFacts
from fabguard.domain.values import CaName, FixtureId, OrderId, ProductId, Serial, SiteId
from fabguard.fixture.device import SimulatedDevice
from fabguard.fixture.openhtf_records import openhtf_record
from fabguard.pki import matter
from fabguard.service.approvals import requests
from fabguard.service.authority.ca_acts import MatterPaiCreation
from fabguard.service.catalog import fixtures, identity_pools, orders, product_catalog
from fabguard.service.core.instance import Instance
from fabguard.service.provisioning import issuance, testrecords
from fabguard.service.provisioning.allocation import Allocated, allocate_unit
from fabguard.service.provisioning.unit_requests import Provisioned
from fabguard.store.identity_models import IdentityPoolRow, UnitIdentityRow
from fabguard.store.models import Event, Order, Unit
from tests.cli.test_identities_cli import fg
from tests.support import REQUESTER, World, second_person_approves

PRODUCT, SITE, ORDER = "bulb", "cm-a", "po-bulb"
FIXTURE = FixtureFacts("fx-1", SITE, False)
BASE38 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-."


def decode_qr(text: str) -> dict[str, int]:
    """The fields of a Matter QR payload (5.1.3): base38 chunks of 5, 4 or 2 digits (least significant
    first) give 3, 2 or 1 little-endian bytes; the 88 bits then hold, from the least significant, the
    version (3), vendor ID (16), product ID (16), flow (2), discovery (8), discriminator (12), passcode (27)."""
    assert text.startswith("MT:")
    digits, data = text[3:], bytearray()
    for at in range(0, len(digits), 5):
        chunk = digits[at : at + 5]
        value = sum(BASE38.index(c) * 38**i for i, c in enumerate(chunk))
        size = {5: 3, 4: 2, 2: 1}[len(chunk)]
        data += value.to_bytes(size, "little")
    bits = int.from_bytes(data, "little")
    fields: dict[str, int] = {}
    for name, width in (
        ("version", 3),
        ("vendor_id", 16),
        ("product_id", 16),
        ("flow", 2),
        ("discovery", 8),
        ("discriminator", 12),
        ("passcode", 27),
    ):
        fields[name], bits = bits & ((1 << width) - 1), bits >> width
    return fields


def test_the_decoder_reads_the_chip_sdks_published_payload() -> None:
    assert decode_qr("MT:634J042C00KA0648G00") == {
        "version": 0,
        "vendor_id": 0xFFF2,
        "product_id": 0x8001,
        "flow": 0,
        "discovery": 2,
        "discriminator": 3840,
        "passcode": 20202021,
    }


def _prepare(inst: Instance, *, quota: int = 5) -> None:
    product_catalog.create_product(inst, product_id=ProductId(PRODUCT), name="Smart Bulb", actor="t")
    product_catalog.create_site(inst, site_id=SiteId(SITE), name="CM A", actor="t")
    fixtures.create_fixture(inst, fixture_id=FixtureId(FIXTURE.id), site_id=SiteId(SITE), actor="t")


def _pai(inst: Instance, vid: int, pid: int | None, name: str = "pai-bulb") -> dict[str, object]:
    """A Matter PAI for the bulb, asked for and approved by a second person: what the act did."""
    asked = requests.request(inst, CaName(name).value, MatterPaiCreation(PRODUCT, vid, pid), by=REQUESTER)
    return second_person_approves(inst, asked)


def _pool(vid: int, pid: int) -> dict[str, object]:
    return {"matter": {"vendor_id": vid, "product_id": pid, "iterations": 1000}}


def _order(inst: Instance, quota: int = 5) -> str:
    return orders.create_order(
        inst, order_id=OrderId(ORDER), product_id=ProductId(PRODUCT), site_id=SiteId(SITE), quota=quota, actor="t"
    ).id


def _provision(inst: Instance, serial: str) -> Provisioned:
    rng = random.Random(serial)
    testrecords.record_tests(inst, FIXTURE, [openhtf_record(serial, FIXTURE.id, fail=False, rng=rng)])
    request = unit_request(ORDER, serial, SimulatedDevice(serial).csr_pem(), max_csr_bytes=8192)
    return issuance.provision_unit(inst, FIXTURE, request)


def _dac_and_payload(done: Provisioned) -> tuple[tuple[int, int], tuple[int, int]]:
    dac = x509.load_pem_x509_certificate(done.certificate_pem.encode())
    vid, pid = matter.subject_ids(dac.subject)
    assert vid is not None and pid is not None
    assert done.identity is not None and done.identity.matter is not None
    qr = decode_qr(done.identity.matter.qr_code)
    return (vid.value, pid.value), (qr["vendor_id"], qr["product_id"])


def test_a_pool_that_agrees_with_the_pai_gives_a_dac_and_a_qr_code_naming_the_same_product(
    any_instance: Instance,
) -> None:
    inst = any_instance
    _prepare(inst)
    _pai(inst, 0xFFF1, 0x8000)
    identity_pools.set_pools(inst, ProductId(PRODUCT), pool_from_json(_pool(0xFFF1, 0x8000)), actor="t")
    _order(inst)

    dac_ids, qr_ids = _dac_and_payload(_provision(inst, "SN-1"))

    assert dac_ids == qr_ids == (0xFFF1, 0x8000)


@pytest.mark.parametrize(("vid", "pid"), [(0xFFF2, 0x8000), (0xFFF1, 0x8001)])
def test_a_pool_whose_matter_ids_differ_from_the_products_pai_is_refused(
    any_instance: Instance, vid: int, pid: int
) -> None:
    inst = any_instance
    _prepare(inst)
    _pai(inst, 0xFFF1, 0x8000)
    before = _events(inst)

    with pytest.raises(FabGuardError) as refused:
        identity_pools.set_pools(inst, ProductId(PRODUCT), pool_from_json(_pool(vid, pid)), actor="t")

    assert (refused.value.code, refused.value.status) == ("matter_ids_mismatch", 409)
    assert "pai-bulb" in refused.value.message
    with inst.db.read() as s:
        assert s.get(IdentityPoolRow, PRODUCT) is None
    assert _events(inst) == before  # nothing changed, nothing declared


def _events(inst: Instance) -> list[str]:
    with inst.db.read() as s:
        return list(s.execute(select(Event.kind).order_by(Event.seq)).scalars())


def _counts(inst: Instance) -> tuple[int, int, int]:
    """The order's quota used, the identities drawn, the units issued."""
    with inst.db.read() as s:
        order = s.get(Order, ORDER)
        assert order is not None
        drawn = s.execute(select(func.count()).select_from(UnitIdentityRow)).scalar_one()
        units = s.execute(select(func.count()).select_from(Unit)).scalar_one()
        return order.used, drawn, units


def _declared_before_the_rule(inst: Instance, vid: int, pid: int) -> None:
    """The pool's Matter IDs changed in the database itself, as an instance upgraded from before this rule
    (or edited by hand) may hold them: the rules at declaration never saw them."""
    with inst.db.transaction() as s:
        row = s.get(IdentityPoolRow, PRODUCT)
        assert row is not None
        row.matter_vendor_id, row.matter_product_id = vid, pid


def _refusals(inst: Instance) -> list[tuple[str, str | None, str | None]]:
    with inst.db.read() as s:
        found = s.execute(select(Event.kind, Event.code, Event.serial).where(Event.kind.like("%.refused")))
        return [(kind, code, serial) for kind, code, serial in found]


@pytest.mark.parametrize(("vid", "pid"), [(0xFFF2, 0x8000), (0xFFF1, 0x8001)])
def test_a_unit_whose_onboarding_payload_would_differ_from_its_dac_gets_no_dac(
    any_instance: Instance, vid: int, pid: int
) -> None:
    inst = any_instance
    _prepare(inst)
    _pai(inst, 0xFFF1, 0x8000)
    identity_pools.set_pools(inst, ProductId(PRODUCT), pool_from_json(_pool(0xFFF1, 0x8000)), actor="t")
    _order(inst)
    _declared_before_the_rule(inst, vid, pid)

    with pytest.raises(FabGuardError) as refused:
        done = _provision(inst, "SN-1")
        pytest.fail(f"a DAC for {_dac_and_payload(done)[0]} and a QR code for {_dac_and_payload(done)[1]}")

    assert (refused.value.code, refused.value.status) == ("matter_ids_mismatch", 409)
    assert _counts(inst) == (0, 0, 0)  # no quota, no identity drawn, no unit
    assert _refusals(inst) == [("unit.refused", "matter_ids_mismatch", "SN-1")]
    with inst.db.read() as s:
        pool = s.get(IdentityPoolRow, PRODUCT)
        assert pool is not None and (pool.next_serial, pool.next_mac_unit) == (0, 0)


def test_a_unit_allocated_before_gets_no_dac_naming_another_product_than_its_payload(any_instance: Instance) -> None:
    """The payload allocated to the unit (not the pool's declaration) is what its DAC must name."""
    inst = any_instance
    _prepare(inst)
    _pai(inst, 0xFFF1, 0x8000)
    identity_pools.set_pools(inst, ProductId(PRODUCT), pool_from_json(_pool(0xFFF1, 0x8000)), actor="t")
    _order(inst)
    given = allocate_unit(inst, FIXTURE, OrderId(ORDER), Serial("SN-1"))
    assert isinstance(given, Allocated)
    with inst.db.transaction() as s:  # an allocation from before the rule, for another vendor
        row = s.execute(select(UnitIdentityRow).where(UnitIdentityRow.serial == "SN-1")).scalar_one()
        row.vendor_id = 0xFFF2

    with pytest.raises(FabGuardError) as refused:
        _provision(inst, "SN-1")

    assert refused.value.code == "matter_ids_mismatch" and "FFF2" in refused.value.message
    assert _counts(inst) == (0, 1, 0)  # no quota, no new identity, no unit
    assert _refusals(inst) == [("unit.refused", "matter_ids_mismatch", "SN-1")]


def test_an_allocation_gives_no_onboarding_data_the_orders_pai_would_contradict(any_instance: Instance) -> None:
    inst = any_instance
    _prepare(inst)
    _pai(inst, 0xFFF1, 0x8000)
    pool = {"serials": {"prefix": "BULB-", "width": 5}, "matter": {"vendor_id": 0xFFF1, "product_id": 0x8000}}
    identity_pools.set_pools(inst, ProductId(PRODUCT), pool_from_json(pool), actor="t")
    _order(inst)
    assert isinstance(allocate_unit(inst, FIXTURE, OrderId(ORDER), None), Allocated)  # they agree: drawn
    _declared_before_the_rule(inst, 0xFFF1, 0x8001)

    with pytest.raises(FabGuardError) as refused:
        allocate_unit(inst, FIXTURE, OrderId(ORDER), None)

    assert refused.value.code == "matter_ids_mismatch" and "pai-bulb" in refused.value.message
    assert _counts(inst) == (0, 1, 0)
    assert _refusals(inst) == [("identity.refused", "matter_ids_mismatch", None)]
    with inst.db.read() as s:
        row = s.get(IdentityPoolRow, PRODUCT)
        assert row is not None and row.next_serial == 1  # the refused allocation spent no serial


def test_over_https_and_in_the_cli_a_disagreeing_pool_is_a_409_and_a_one_line_refusal(
    world: World, tmp_path: Path
) -> None:
    asked = requests.request(world.inst, "pai-sensor", MatterPaiCreation("sensor", 0xFFF1, 0x8000), by=REQUESTER)
    second_person_approves(world.inst, asked)
    with world.admin() as admin:
        refused = admin.put("/api/v1/products/sensor/identities", json=_pool(0xFFF2, 0x8000))
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "matter_ids_mismatch"
        assert "pai-sensor" in refused.json()["error"]["message"]
        assert admin.get("/api/v1/products/sensor/identities").status_code == 404  # nothing declared
        assert admin.put("/api/v1/products/sensor/identities", json=_pool(0xFFF1, 0x8000)).status_code == 200

    home = tmp_path / "cli"
    assert fg(home, "init", "--org", "Acme")[0] == 0
    assert fg(home, "product", "add", PRODUCT, "--name", "Bulb")[0] == 0
    inst = Instance.open(home)
    try:
        _pai(inst, 0xFFF1, 0x8000)
    finally:
        inst.close()
    pool = ("--matter-vendor-id", str(0xFFF1), "--matter-product-id", str(0x8001))
    code, out = fg(home, "product", "identities", PRODUCT, *pool)
    assert code != 0 and "matter_ids_mismatch" in " ".join(out.split()) and "Traceback" not in out
