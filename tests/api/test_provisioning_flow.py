"""End to end over real HTTPS with a real client certificate: test, provision, retry, refuse."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from fabguard.fixture.client import FabGuardClientError
from fabguard.fixture.device import SimulatedDevice
from fabguard.service.catalog import orders
from fabguard.service.core import events
from tests.support import World, tested_device


def test_tested_unit_gets_an_idevid_and_a_retry_gets_the_same_one_for_free(any_world: World) -> None:
    order = any_world.order(quota=2)
    fx = any_world.fixture("fx-1")
    device = tested_device(fx, "SN0001")

    first = fx.provision(order, "SN0001", device.csr_pem())
    again = fx.provision(order, "SN0001", device.csr_pem())

    cert = x509.load_pem_x509_certificate(first.certificate_pem.encode())
    assert cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == "SN0001"
    assert cert.public_key() == device.key.public_key()
    assert not first.replayed and again.replayed
    assert again.certificate_pem == first.certificate_pem
    view = orders.get_order(any_world.inst, order)
    assert (view.used, view.remaining) == (1, 1)
    kinds = [e["kind"] for e in events.list_events(any_world.inst, kind="unit.provisioned")]
    assert kinds == ["unit.provisioned"]


def test_second_unit_over_quota_is_refused_and_consumes_nothing(any_world: World) -> None:
    order = any_world.order(quota=1)
    fx = any_world.fixture("fx-1")
    fx.provision(order, "SN0001", tested_device(fx, "SN0001").csr_pem())

    with pytest.raises(FabGuardClientError) as refused:
        fx.provision(order, "SN0002", tested_device(fx, "SN0002").csr_pem())

    assert (refused.value.status, refused.value.code) == (409, "quota_exhausted")
    view = orders.get_order(any_world.inst, order)
    assert view.used == 1 and view.refused == {"quota_exhausted": 1}


def test_clone_key_on_another_serial_is_refused_as_key_reused(world: World) -> None:
    order = world.order(quota=5)
    fx = world.fixture("fx-1")
    original = tested_device(fx, "SN0001")
    fx.provision(order, "SN0001", original.csr_pem())
    clone = original.clone_as("SN0099")
    tested_device(fx, "SN0099")

    with pytest.raises(FabGuardClientError) as refused:
        fx.provision(order, "SN0099", clone.csr_pem())

    assert refused.value.code == "key_reused"
    assert orders.get_order(world.inst, order).used == 1


def test_same_serial_with_another_key_is_refused(world: World) -> None:
    order = world.order(quota=5)
    fx = world.fixture("fx-1")
    fx.provision(order, "SN0001", tested_device(fx, "SN0001").csr_pem())

    with pytest.raises(FabGuardClientError) as refused:
        fx.provision(order, "SN0001", SimulatedDevice("SN0001").csr_pem())

    assert refused.value.code == "serial_has_other_key"
    assert orders.get_order(world.inst, order).used == 1


def test_failed_test_then_passing_retest_opens_the_door(world: World) -> None:
    order = world.order(quota=5)
    fx = world.fixture("fx-1")
    device = tested_device(fx, "SN0001", passed=False)
    with pytest.raises(FabGuardClientError) as refused:
        fx.provision(order, "SN0001", device.csr_pem())
    assert refused.value.code == "test_failed"

    tested_device(fx, "SN0001", passed=True)
    issued = fx.provision(order, "SN0001", device.csr_pem())

    assert not issued.replayed
    assert orders.get_order(world.inst, order).used == 1
