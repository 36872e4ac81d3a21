"""A field check knows the allocation (issue 29): a device of a product that takes only allocated serials,
whose serial was never allocated to its order, is not genuine (``serial_not_allocated``) and raises a
``not_issued`` clone signal, even with our CA's certificate; an allocated unit is genuine."""

from __future__ import annotations

import ssl

import httpx

from fabguard.domain.identities.pools import pool_from_json
from fabguard.domain.values import ProductId
from fabguard.service.access import tokens
from fabguard.service.catalog import identity_pools
from tests.support import World, tested_device


def test_a_unit_whose_serial_was_never_allocated_is_not_genuine_and_looks_cloned(any_world: World) -> None:
    world = any_world
    order = world.order(quota=5)
    fx = world.fixture("fx-1")
    before = tested_device(fx, "OLD-1")  # provisioned before the product took only allocated serials
    before.certificate_pem = fx.provision(order, "OLD-1", before.csr_pem()).certificate_pem
    pool = {"serials": {"prefix": "NEW-", "width": 4, "required": True}}
    identity_pools.set_pools(world.inst, ProductId("sensor"), pool_from_json(pool), actor="test")
    serial = str(fx.allocate(order)["serial"])
    allocated = tested_device(fx, serial)
    allocated.certificate_pem = fx.provision(order, serial, allocated.csr_pem()).certificate_pem

    _, secret = tokens.create_token(world.inst, name="desk", role="field", actor="test")
    with httpx.Client(
        base_url=world.url,
        verify=ssl.create_default_context(cafile=str(world.root_ca)),
        headers={"Authorization": f"Bearer {secret}"},
    ) as http:

        def check(device: object) -> dict[str, object]:
            nonce = http.post("/api/v1/field/challenge").json()["nonce"]
            r = http.post("/api/v1/field/verify", json=device.field_answer(nonce))  # type: ignore[attr-defined]
            assert r.status_code == 200, r.text
            body: dict[str, object] = r.json()
            return body

        old = check(before)
        assert (old["genuine"], old["reason"], old["clone"]) == (False, "serial_not_allocated", "not_issued")
        good = check(allocated)
        assert (good["genuine"], good["reason"], good["clone"]) == (True, None, None)
