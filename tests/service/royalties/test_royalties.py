"""Royalty rates and signed statements on both engines: rates are ledger events that never reach back,
statements agree with the provisioned units, an auditor recomputes them from an export, signatures hold."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from fabguard.domain.errors import FabGuardError
from fabguard.domain.money import Money
from fabguard.domain.values import OrderId, ProductId, SiteId
from fabguard.fixture.client import FabGuardClientError
from fabguard.fixture.device import SimulatedDevice
from fabguard.ledger.entry import decode_entry
from fabguard.ledger.royalty import RoyaltyScope, royalty_statement
from fabguard.ledger.verify import AuditFailure, verify_report
from fabguard.service.authority import revocation
from fabguard.service.ledger import merkle_log, reports
from fabguard.service.ledger.reports import sign_bytes
from fabguard.service.royalties import statement_pdf, statements
from fabguard.store.models import Event
from fabguard.store.royalty_models import RoyaltyRate
from tests.support import World, tested_device

EUR = Money.parse


class Clock:
    def __init__(self, world: World) -> None:
        self.inst, self.real, self.offset = world.inst, world.inst.clock, timedelta()
        world.inst.clock = lambda: self.real() + self.offset

    def advance(self, **kw: float) -> datetime:
        self.offset += timedelta(**kw)
        return self.inst.clock()


@pytest.fixture
def line(any_world: World) -> Iterator[tuple[World, str, Clock, Callable[[str], None]]]:
    order = any_world.order(quota=10)
    fx = any_world.fixture("fx-1")
    clock = Clock(any_world)

    def provision(serial: str) -> None:
        fx.provision(order, serial, tested_device(fx, serial).csr_pem())

    yield any_world, order, clock, provision
    any_world.inst.clock = clock.real


def test_units_are_priced_at_the_rate_in_force_and_a_past_period_keeps_its_statement(
    line: tuple[World, str, Clock, Callable[[str], None]],
) -> None:
    world, order, clock, provision = line
    inst, oid = world.inst, OrderId(order)
    start = inst.clock()
    statements.set_rate(inst, rate=EUR("0.40", "EUR"), actor="eng", product_id=ProductId("sensor"))
    provision("SN-1")
    provision("SN-2")
    first_period = {"since": start, "until": clock.advance(minutes=30)}
    before = statements.statement(inst, sign_checkpoint=True, order_id=oid, **first_period).body

    clock.advance(minutes=30)
    statements.set_rate(inst, rate=EUR("0.50", "EUR"), actor="eng", product_id=ProductId("sensor"))
    statements.set_rate(
        inst, rate=EUR("0.30", "EUR"), actor="eng", order_id=oid, effective_from=inst.clock() + timedelta(hours=1)
    )
    provision("SN-3")  # the product's new rate; the order's is not in force yet
    clock.advance(hours=2)
    provision("SN-4")  # the order's own rate

    body = statements.statement(inst, sign_checkpoint=True, order_id=oid).body
    assert body["figures"]["totals"] == {"EUR": "1.60"} and body["figures"]["provisioned"] == 4
    assert [(ln["units"], ln["rate"]["amount"], ln["rate"]["basis"]) for ln in body["lines"]] == [
        (2, "0.40", "product"),
        (1, "0.50", "product"),
        (1, "0.30", "order"),
    ]
    after = statements.statement(inst, sign_checkpoint=True, order_id=oid, **first_period).body
    assert after["lines"] == before["lines"] and after["figures"] == before["figures"]
    assert after["checkpoint"]["size"] > before["checkpoint"]["size"]  # computed later, same statement
    assert (
        reports.reconciliation_report(inst, order_id=order, sign_checkpoint=True).body["figures"]["provisioned"] == 4
    )  # rates ignored
    rates = statements.list_rates(inst, product_id="sensor")
    assert [(r.amount, r.order_id) for r in rates] == [("0.40", None), ("0.50", None), ("0.30", order)]
    entries = _entries(world)
    for r in rates:
        e = entries[r.ledger_entry]
        assert e["kind"] == "royalty.rate_set" and e["detail"]["amount"] == r.amount and e["actor"] == "eng"


def test_a_rate_that_reaches_back_or_names_nothing_is_refused_and_changes_nothing(world: World) -> None:
    inst, order = world.inst, world.order()
    events, rows = _counts(world)
    cases = [
        (
            "rate_retroactive",
            {"product_id": ProductId("sensor"), "effective_from": inst.clock() - timedelta(seconds=5)},
        ),
        ("product_not_found", {"product_id": ProductId("nope")}),
        ("order_not_found", {"order_id": OrderId("po-none")}),
        ("invalid_request", {"product_id": ProductId("sensor"), "order_id": OrderId(order)}),
    ]
    for code, kw in cases:
        with pytest.raises(FabGuardError) as err:
            statements.set_rate(inst, rate=EUR("1", "EUR"), actor="eng", **kw)  # type: ignore[arg-type]
        assert err.value.code == code
    assert _counts(world) == (events, rows)


def test_revoked_and_refused_units_are_reported_not_charged(
    line: tuple[World, str, Clock, Callable[[str], None]],
) -> None:
    world, order, _, provision = line
    inst = world.inst
    statements.set_rate(inst, rate=EUR("1.25", "USD"), actor="eng", order_id=OrderId(order))
    provision("SN-1")
    provision("SN-2")
    fx = world.clients[0]
    with pytest.raises(FabGuardClientError) as refused:
        fx.provision(order, "SN-UNTESTED", SimulatedDevice("SN-UNTESTED").csr_pem())
    assert refused.value.code == "test_missing"
    revocation.revoke_unit(inst, "SN-1", reason_code="key_compromise", note="leaked", actor="admin")
    figures = statements.statement(inst, sign_checkpoint=True, site_id=SiteId("cm-a")).body["figures"]
    assert figures["totals"] == {"USD": "2.50"} and figures["revoked"] == 1
    assert figures["refused"] == {"test_missing": 1}
    other = statements.statement(inst, sign_checkpoint=True, site_id=SiteId("cm-b")).body["figures"]
    assert other["provisioned"] == 0 and other["totals"] == {}


def test_statement_is_signed_recomputable_from_an_export_and_tamper_evident(
    line: tuple[World, str, Clock, Callable[[str], None]], tmp_path: Path
) -> None:
    world, order, _, provision = line
    inst = world.inst
    statements.set_rate(inst, rate=EUR("0.07", "EUR"), actor="eng", product_id=ProductId("sensor"))
    provision("SN-1")
    st = statements.statement(inst, sign_checkpoint=True, product_id=ProductId("sensor"))
    merkle_log.export(inst, tmp_path / "export")
    lines = (tmp_path / "export" / "entries.jsonl").read_bytes().splitlines()[: st.body["tree_size"]]
    recomputed = royalty_statement((decode_entry(b) for b in lines), RoyaltyScope(product_id="sensor")).to_dict()
    assert recomputed["figures"] == st.body["figures"] and recomputed["lines"] == st.body["lines"]

    key = merkle_log.public_verifier_key(inst)
    (tmp_path / "statement.json").write_text(statements.statement_json(st))
    pdf = statement_pdf.to_pdf(st)
    assert pdf.startswith(b"%PDF") and b"royalty statement" in pdf
    (tmp_path / "statement.pdf").write_bytes(pdf)
    (tmp_path / "statement.pdf.sig").write_text(sign_bytes(inst, pdf))
    verify_report(tmp_path / "statement.json", key)
    verify_report(tmp_path / "statement.pdf", key)
    csv_text = statements.to_csv(st)
    assert "provisioned,cm-a," in csv_text and "total,,,,,,EUR,0.07," in csv_text

    doc = json.loads((tmp_path / "statement.json").read_text())
    doc["report"]["figures"]["totals"]["EUR"] = str(Decimal("0.01"))
    (tmp_path / "statement.json").write_text(json.dumps(doc))
    with pytest.raises(AuditFailure, match="does not verify"):
        verify_report(tmp_path / "statement.json", key)
    assert order in {ln["order_id"] for ln in st.body["lines"]}


def _entries(world: World) -> dict[int, dict[str, object]]:
    with world.inst.db.read() as s:
        return {seq - 1: decode_entry(bytes(e)) for seq, e in s.execute(select(Event.seq, Event.entry)).all()}


def _counts(world: World) -> tuple[int, int]:
    with world.inst.db.read() as s:
        return (
            s.execute(select(func.count()).select_from(Event)).scalar_one(),
            s.execute(select(func.count()).select_from(RoyaltyRate)).scalar_one(),
        )
