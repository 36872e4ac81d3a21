"""Rotating a Matter PAI makes a Matter PAI: its successor is signed by the same vendor's PAA and fixes the
same vendor and product IDs, so the product's new orders still get DACs that chain to the PAA (before, the
successor was an ordinary issuing CA under FabGuard's root and new orders got IDevIDs). Where the PAA's key
is offline, the rotation is refused when asked for (``ca_key_offline``: the successor is a ceremony step),
nothing changed."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from fabguard.domain.errors import FabGuardError
from fabguard.domain.values import CaName, ProductId, SiteId
from fabguard.pki import matter
from fabguard.service.approvals import requests
from fabguard.service.authority import authorities
from fabguard.service.authority import ceremony as instance_side
from fabguard.service.authority.ca_acts import CaRotation, MatterPaiCreation
from fabguard.service.catalog import orders, product_catalog
from fabguard.service.core import events
from fabguard.service.core.instance import Instance
from tests.service.authority.test_ceremony import ORG, new_ceremony, offline_instance
from tests.support import REQUESTER, World, second_person_approves, tested_device


def _bulb_with_pai(inst: Instance, pid: int | None = 0x8000) -> None:
    product_catalog.create_product(inst, product_id=ProductId("bulb"), name="Smart Bulb", actor="t")
    asked = requests.request(inst, CaName("pai-bulb").value, MatterPaiCreation("bulb", 0xFFF1, pid), by=REQUESTER)
    second_person_approves(inst, asked)


def _rotate(inst: Instance) -> None:
    asked = requests.request(inst, "pai-bulb", CaRotation(CaName("pai-bulb-2").value), by=REQUESTER)
    second_person_approves(inst, asked)


@pytest.mark.parametrize("pid", [0x8000, None])
def test_a_rotated_pai_is_succeeded_by_a_pai_with_its_ids_under_its_paa(world: World, pid: int | None) -> None:
    _bulb_with_pai(world.inst, pid)
    old = world.inst.cas.issuer("pai-bulb").certificate

    _rotate(world.inst)

    new = world.inst.cas.issuer("pai-bulb-2").certificate
    assert matter.subject_ids(new.subject) == matter.subject_ids(old.subject)
    assert new.issuer == old.issuer  # the vendor's PAA, not FabGuard's root
    new.verify_directly_issued_by(world.inst.cas.issuer("matter-paa-fff1").certificate)
    assert new.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    views = {c.name: c for c in authorities.list_cas(world.inst)}
    assert (views["pai-bulb"].state, views["pai-bulb-2"].state) == ("retired", "active")
    assert views["pai-bulb-2"].product_id == "bulb"
    rotated = [e for e in events.list_events(world.inst, limit=100) if e["kind"] == "ca.rotated"]
    assert [e["detail"]["successor"] for e in rotated] == ["pai-bulb-2"]


def test_the_products_new_orders_get_dacs_from_the_successor(world: World) -> None:
    _bulb_with_pai(world.inst)
    _rotate(world.inst)
    order = orders.create_order(world.inst, product_id=ProductId("bulb"), site_id=SiteId("cm-a"), quota=1, actor="t").id
    assert orders.get_order(world.inst, order).issuing_ca == "pai-bulb-2"
    fx = world.fixture("fx-1")

    issued = fx.provision(order, "SN-M1", tested_device(fx, "SN-M1").csr_pem())

    dac = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
    pai, paa = (x509.load_pem_x509_certificate(p.encode()) for p in issued.chain_pem)
    matter.check_attestation_chain(dac, pai, paa)
    assert tuple(str(i) for i in matter.subject_ids(dac.subject)) == ("FFF1", "8000")


def test_rotating_a_pai_whose_paa_is_offline_is_refused_when_asked_for(
    tmp_path: Path, database_url: str | None
) -> None:
    inst = offline_instance(tmp_path / "home", new_ceremony(tmp_path / "root"), database_url)
    try:
        product_catalog.create_product(inst, product_id=ProductId("bulb"), name="Smart Bulb", actor="t")
        asked = instance_side.add_matter_pai(
            inst, CaName("pai-bulb"), product_id="bulb", vid=0xFFF1, pid=0x8000, actor="t"
        )
        paa = new_ceremony(tmp_path / "paa", f"{ORG} Matter PAA FFF1", matter_vid=0xFFF1)
        instance_side.import_bundle(inst, paa.sign(asked), actor="t")
        assert authorities.get_ca(inst, "pai-bulb").state == "active"

        with pytest.raises(FabGuardError) as refused:
            requests.request(inst, "pai-bulb", CaRotation(CaName("pai-bulb-2").value), by=REQUESTER)

        assert refused.value.code == "ca_key_offline" and "ceremony" in refused.value.message
        assert requests.list_approvals(inst) == []
        assert authorities.get_ca(inst, "pai-bulb").state == "active"
        assert "pai-bulb-2" not in {c.name for c in authorities.list_cas(inst)}
    finally:
        inst.close()
