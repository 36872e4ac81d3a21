"""A product's CRA facts: its end of support and its vulnerability contact, set by an engineer, logged."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from fabguard.domain.errors import InvalidRequest, NotFound
from fabguard.domain.values import ProductId
from fabguard.service.catalog import product_catalog
from fabguard.service.core.instance import Instance
from fabguard.store.models import Event, Product

SENSOR = ProductId("sensor")


def _facts(inst: Instance) -> tuple[date | None, str | None, int]:
    with inst.db.read() as s:
        p = s.get(Product, "sensor")
        assert p is not None
        logged = len(s.execute(select(Event.seq).where(Event.kind == "product.compliance_set")).all())
        return p.support_until, p.vulnerability_contact, logged


def test_compliance_facts_are_set_listed_and_logged_and_bad_ones_change_nothing(any_instance: Instance) -> None:
    inst = any_instance
    product_catalog.create_product(inst, product_id=SENSOR, name="Sensor", actor="test")
    assert product_catalog.product_dict(product_catalog.list_products(inst)[0])["support_until"] is None

    product_catalog.set_product_compliance(
        inst, SENSOR, support_until=date(2031, 12, 31), vulnerability_contact="psirt@acme.example", actor="eng"
    )
    assert _facts(inst) == (date(2031, 12, 31), "psirt@acme.example", 1)
    listed = product_catalog.product_dict(product_catalog.list_products(inst)[0])
    assert (listed["support_until"], listed["vulnerability_contact"]) == ("2031-12-31", "psirt@acme.example")

    for contact in ("", "call us", "http://acme.example/psirt", "a@b", "https://", "x" * 490 + "@acme.example"):
        with pytest.raises(InvalidRequest) as refused:
            product_catalog.set_product_compliance(
                inst, SENSOR, support_until=date(2032, 1, 1), vulnerability_contact=contact, actor="eng"
            )
        assert refused.value.code == "invalid_vulnerability_contact"
    with pytest.raises(InvalidRequest) as refused:
        product_catalog.set_product_compliance(
            inst, SENSOR, support_until=date(1999, 1, 1), vulnerability_contact="https://acme.example/psirt", actor="e"
        )
    assert refused.value.code == "invalid_support_period"
    with pytest.raises(NotFound) as missing:
        product_catalog.set_product_compliance(
            inst, ProductId("other"), support_until=date(2032, 1, 1), vulnerability_contact="a@b.example", actor="e"
        )
    assert missing.value.code == "product_not_found"
    assert _facts(inst) == (date(2031, 12, 31), "psirt@acme.example", 1)

    product_catalog.set_product_compliance(
        inst, SENSOR, support_until=date(2033, 6, 30), vulnerability_contact="https://acme.example/psirt", actor="eng"
    )
    assert _facts(inst) == (date(2033, 6, 30), "https://acme.example/psirt", 2)
