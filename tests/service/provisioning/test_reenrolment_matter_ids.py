"""Re-enrolment of a Matter unit (EST simplereenroll) and the unit's Matter IDs (docs/identities.md, "The
pool's Matter IDs and the product's PAI").

What re-enrolment does today: it signs a new DAC under the unit's own issuing CA (``Unit.issuing_ca``, the
PAI that signed its first DAC), never under its order's current CA: after a rotation the unit's PAI is
retired, still signs for its units, and its certificate (so its VID and PID) never changes. Its first DAC
was checked against its onboarding payload at issuance, and a PAI or pool that would contradict the other
is refused where it is declared, so with data written under these rules the new DAC names what the QR code
does. What the rules at declaration never saw (an instance upgraded from before them, a row edited by hand)
can still disagree: re-enrolment then refuses (``matter_ids_mismatch``) and changes nothing.
"""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select

from fabguard.domain.errors import FabGuardError
from fabguard.domain.identities.pools import pool_from_json
from fabguard.domain.values import ProductId
from fabguard.fixture.device import SimulatedDevice
from fabguard.pki import matter
from fabguard.service.approvals import requests
from fabguard.service.authority.ca_acts import CaRotation
from fabguard.service.catalog import identity_pools
from fabguard.service.core.instance import Instance
from fabguard.service.provisioning import reenrolment
from fabguard.service.provisioning.unit_requests import Provisioned
from fabguard.store.identity_models import UnitIdentityRow
from fabguard.store.models import Event, SupersededCertificate, Unit
from tests.service.provisioning.test_matter_ids import (
    PRODUCT,
    _dac_and_payload,
    _order,
    _pai,
    _pool,
    _prepare,
    _provision,
)
from tests.support import REQUESTER, second_person_approves


def _matter_unit(inst: Instance, serial: str = "SN-1") -> Provisioned:
    """A bulb provisioned under its PAI (FFF1/8000) with onboarding data from an agreeing pool."""
    _prepare(inst)
    _pai(inst, 0xFFF1, 0x8000)
    identity_pools.set_pools(inst, ProductId(PRODUCT), pool_from_json(_pool(0xFFF1, 0x8000)), actor="t")
    _order(inst)
    done = _provision(inst, serial)
    assert _dac_and_payload(done) == ((0xFFF1, 0x8000), (0xFFF1, 0x8000))
    return done


def _reenroll(inst: Instance, done: Provisioned) -> Provisioned:
    der = x509.load_pem_x509_certificate(done.certificate_pem.encode()).public_bytes(serialization.Encoding.DER)
    return reenrolment.reenroll_unit(inst, der, SimulatedDevice(done.serial).csr_pem().encode())


def _state(inst: Instance) -> tuple[list[str], str, int]:
    """The events, the unit's certificate and the superseded certificates."""
    with inst.db.read() as s:
        events = list(s.execute(select(Event.kind).order_by(Event.seq)).scalars())
        pem = s.execute(select(Unit.certificate_pem)).scalar_one()
        superseded = s.execute(select(func.count()).select_from(SupersededCertificate)).scalar_one()
        return events, pem, superseded


def test_a_reenrolled_dac_names_what_the_units_qr_code_does(any_instance: Instance) -> None:
    inst = any_instance
    first = _matter_unit(inst)

    renewed = _reenroll(inst, first)

    dac = x509.load_pem_x509_certificate(renewed.certificate_pem.encode())
    vid, pid = matter.subject_ids(dac.subject)
    assert (vid, pid) == (matter.VendorId(0xFFF1), matter.ProductId(0x8000))
    assert renewed.certificate_pem != first.certificate_pem


def test_after_a_rotation_the_unit_is_reenrolled_under_its_own_pai_not_the_successor(any_instance: Instance) -> None:
    inst = any_instance
    first = _matter_unit(inst)
    second_person_approves(inst, requests.request(inst, "pai-bulb", CaRotation("pai-bulb-2"), by=REQUESTER))

    renewed = _reenroll(inst, first)

    dac = x509.load_pem_x509_certificate(renewed.certificate_pem.encode())
    pai = x509.load_pem_x509_certificate(renewed.chain_pem[0].encode())
    assert dac.issuer == x509.load_pem_x509_certificate(first.chain_pem[0].encode()).subject == pai.subject
    assert "pai-bulb-2" not in dac.issuer.rfc4514_string()
    assert matter.subject_ids(dac.subject) == (matter.VendorId(0xFFF1), matter.ProductId(0x8000))


@pytest.mark.parametrize(("vid", "pid"), [(0xFFF2, 0x8000), (0xFFF1, 0x8001)])
def test_a_unit_whose_onboarding_payload_disagrees_with_its_pai_gets_no_new_dac(
    any_instance: Instance, vid: int, pid: int
) -> None:
    inst = any_instance
    first = _matter_unit(inst)
    with inst.db.transaction() as s:  # allocated before the rule existed (or edited by hand)
        row = s.execute(select(UnitIdentityRow).where(UnitIdentityRow.serial == "SN-1")).scalar_one()
        row.vendor_id, row.matter_product_id = vid, pid
    events, pem, superseded = _state(inst)

    with pytest.raises(FabGuardError) as refused:
        renewed = _reenroll(inst, first)
        dac = x509.load_pem_x509_certificate(renewed.certificate_pem.encode())
        pytest.fail(f"re-enrolled with a DAC for {matter.subject_ids(dac.subject)}")

    assert (refused.value.code, refused.value.status) == ("matter_ids_mismatch", 409)
    assert "pai-bulb" in refused.value.message and "SN-1" in refused.value.message
    assert _state(inst) == ([*events, "reenroll.refused"], pem, superseded)  # no certificate, one refusal
    with inst.db.read() as s:
        code = s.execute(select(Event.code).where(Event.kind == "reenroll.refused")).scalar_one()
    assert code == "matter_ids_mismatch"
