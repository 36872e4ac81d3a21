"""``fabguard unit list``: the provisioned units an operator looks for (the README names it)."""

from __future__ import annotations

from fabguard.service.authority import revocation
from tests.cli.test_cli import fg
from tests.support import World, tested_device


def test_unit_list_shows_an_orders_units_with_their_state(world: World) -> None:
    first, second = world.order(quota=3), world.order(quota=3)
    fx = world.fixture("fx-1")
    for order, serial in ((first, "SN-L1"), (first, "SN-L2"), (second, "SN-L3")):
        fx.provision(order, serial, tested_device(fx, serial).csr_pem())
    revocation.revoke_unit(world.inst, "SN-L2", reason_code="key_compromise", note="leaked", actor="test")
    code, out = fg(world.inst.home, "unit", "list", "--order", first)
    assert code == 0, out
    assert "SN-L1" in out and "SN-L2" in out and "SN-L3" not in out
    assert "revoked (key_compromise)" in out and "2 units" in out
    code, out = fg(world.inst.home, "unit", "list", "--limit", "1")
    assert code == 0 and "SN-L3" in out and "SN-L1" not in out and "raise --limit" in out, out
    code, out = fg(world.inst.home, "unit", "list", "--limit", "0")
    assert code == 3 and "limit must be" in out and "Traceback" not in out, out
