"""A Matter PAI fixes the vendor (and product) of the DACs it signs, and a product's Matter pool the vendor
and product of its units' QR codes: a PAI that disagrees with its product's pool is refused when asked for,
when approved, at a ceremony and when its certificate is imported (``matter_ids_mismatch``, nothing made),
and a pool that disagrees with a PAI still to be signed at a ceremony is refused too."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from fabguard.domain.errors import FabGuardError
from fabguard.domain.identities.pools import pool_from_json
from fabguard.domain.values import CaName, ProductId
from fabguard.pki import ceremony_root, matter
from fabguard.service.approvals import requests
from fabguard.service.authority import authorities
from fabguard.service.authority import ceremony as instance_side
from fabguard.service.authority.ca_acts import CaImport, CaRevocation, MatterPaiCreation
from fabguard.service.catalog import identity_pools, product_catalog
from fabguard.service.core.instance import Instance
from fabguard.store.identity_models import IdentityPoolRow
from fabguard.store.models import CertificateAuthority, Event
from tests.service.authority.test_ceremony import ORG, new_ceremony, offline_instance
from tests.support import REQUESTER, second_person_approves

PRODUCT = "bulb"


def _bulb(inst: Instance) -> None:
    product_catalog.create_product(inst, product_id=ProductId(PRODUCT), name="Smart Bulb", actor="t")


def _set_pool(inst: Instance, vid: int, pid: int) -> None:
    pool = {"matter": {"vendor_id": vid, "product_id": pid, "iterations": 1000}}
    identity_pools.set_pools(inst, ProductId(PRODUCT), pool_from_json(pool), actor="t")


def _ask(inst: Instance, vid: int, pid: int | None, name: str = "pai-bulb") -> requests.ApprovalView:
    return requests.request(inst, CaName(name).value, MatterPaiCreation(PRODUCT, vid, pid), by=REQUESTER)


def _cas(inst: Instance) -> set[str]:
    return {c.name for c in authorities.list_cas(inst)}


@pytest.mark.parametrize(("vid", "pid"), [(0xFFF2, 0x8000), (0xFFF1, 0x8001), (0xFFF2, None)])
def test_a_pai_the_products_pool_disagrees_with_is_refused_when_asked_for(
    any_instance: Instance, vid: int, pid: int | None
) -> None:
    _bulb(any_instance)
    _set_pool(any_instance, 0xFFF1, 0x8000)

    with pytest.raises(FabGuardError) as refused:
        _ask(any_instance, vid, pid)

    assert (refused.value.code, refused.value.status) == ("matter_ids_mismatch", 409)
    assert requests.list_approvals(any_instance) == [] and "pai-bulb" not in _cas(any_instance)


def test_a_pai_that_fixes_the_pools_vendor_and_no_product_is_made(any_instance: Instance) -> None:
    _bulb(any_instance)
    _set_pool(any_instance, 0xFFF1, 0x8000)
    second_person_approves(any_instance, _ask(any_instance, 0xFFF1, None))
    assert "pai-bulb" in _cas(any_instance)


def test_a_pool_declared_while_the_pai_waited_for_approval_refuses_the_approval(any_instance: Instance) -> None:
    inst = any_instance
    _bulb(inst)
    asked = _ask(inst, 0xFFF1, 0x8000)
    _set_pool(inst, 0xFFF2, 0x8000)  # no PAI yet: nothing to disagree with

    with pytest.raises(FabGuardError) as refused:
        second_person_approves(inst, asked)

    assert refused.value.code == "matter_ids_mismatch"
    assert "pai-bulb" not in _cas(inst) and "matter-paa-fff1" not in _cas(inst)
    assert [a.state for a in requests.list_approvals(inst)] == ["pending"]
    with inst.db.read() as s:
        codes = s.execute(select(Event.code).where(Event.kind == "approval.refused")).scalars().all()
    assert codes == ["matter_ids_mismatch"]


def test_a_revoked_pai_binds_no_pool(any_instance: Instance) -> None:
    inst = any_instance
    _bulb(inst)
    second_person_approves(inst, _ask(inst, 0xFFF1, 0x8000))
    with pytest.raises(FabGuardError):
        _set_pool(inst, 0xFFF2, 0x8000)
    second_person_approves(
        inst, requests.request(inst, "pai-bulb", CaRevocation("cessation_of_operation", "t"), by=REQUESTER)
    )
    _set_pool(inst, 0xFFF2, 0x8000)  # the revoked PAI signs nothing more


@pytest.fixture
def offline_bulb(tmp_path: Path, database_url: str | None) -> Iterator[Instance]:
    """An instance whose root is offline (its Matter PAIs are signed at their PAA's ceremony), on each engine."""
    inst = offline_instance(tmp_path / "home", new_ceremony(tmp_path / "root"), database_url)
    _bulb(inst)
    yield inst
    inst.close()


def test_at_a_ceremony_the_pai_and_the_pool_are_held_to_each_other(offline_bulb: Instance, tmp_path: Path) -> None:
    inst = offline_bulb
    _set_pool(inst, 0xFFF2, 0x8000)
    with pytest.raises(FabGuardError) as refused:
        instance_side.add_matter_pai(inst, CaName("pai-bulb"), product_id=PRODUCT, vid=0xFFF1, pid=0x8000, actor="t")
    assert refused.value.code == "matter_ids_mismatch" and "pai-bulb" not in _cas(inst)

    _set_pool(inst, 0xFFF1, 0x8000)
    request = instance_side.add_matter_pai(
        inst, CaName("pai-bulb"), product_id=PRODUCT, vid=0xFFF1, pid=0x8000, actor="t"
    )
    with pytest.raises(FabGuardError) as pending:  # the PAI still to be signed binds the pool already
        _set_pool(inst, 0xFFF1, 0x8001)
    assert pending.value.code == "matter_ids_mismatch"

    # A pool changed behind the rules' back (an instance upgraded from before them): the import refuses the PAI.
    with inst.db.transaction() as s:
        row = s.get(IdentityPoolRow, PRODUCT)
        assert row is not None
        row.matter_product_id = 0x8001
    paa = new_ceremony(tmp_path / "paa", f"{ORG} Matter PAA FFF1", matter_vid=0xFFF1)
    with pytest.raises(FabGuardError) as imported:
        instance_side.import_bundle(inst, paa.sign(request), actor="t")
    assert imported.value.code == "matter_ids_mismatch"
    with inst.db.read() as s:
        row = s.get(CertificateAuthority, "pai-bulb")
        assert row is not None and (row.state, row.certificate_pem) == ("pending", None)
        assert s.get(CertificateAuthority, "matter-paa-fff1") is None  # nothing of the bundle installed


def test_a_matter_certificate_imported_for_a_products_pending_ca_names_its_pools_ids(
    tmp_path: Path, database_url: str | None
) -> None:
    """``ca import``: the offline root's certificate for a product's pending CA, here one whose subject makes
    it a Matter PAI for another product than the pool's, is refused when asked for (nothing made)."""
    root = new_ceremony(tmp_path / "root")
    inst = offline_instance(tmp_path / "home", root, database_url)
    try:
        _bulb(inst)
        _set_pool(inst, 0xFFF1, 0x8000)
        authorities.issuing_csr(inst, CaName("bulb-ca"), site_id=None, product_id=PRODUCT, actor="t")
        with inst.db.read() as s:
            row = s.get(CertificateAuthority, "bulb-ca")
            assert row is not None
            public = inst.keys.load(row.key_ref).public_key()
        with ceremony_root.opened_root(root.directory) as opened:
            cert = matter.pai_certificate(
                opened.issuer, public, "Bulb PAI", matter.VendorId(0xFFF1), matter.ProductId(0x8001), datetime.now(UTC)
            )
        pem = cert.public_bytes(serialization.Encoding.PEM).decode()

        with pytest.raises(FabGuardError) as refused:
            requests.request(inst, "bulb-ca", CaImport(pem), by=REQUESTER)

        assert refused.value.code == "matter_ids_mismatch" and requests.list_approvals(inst) == []
        assert authorities.get_ca(inst, "bulb-ca").state == "pending"
    finally:
        inst.close()
