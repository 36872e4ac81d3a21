"""The royalty routes over real HTTPS: engineers set rates (decimal text only), auditors read the signed
statement as JSON, CSV or PDF, whose signature the ledger key verifies."""

from __future__ import annotations

import base64

import httpx
import pytest
from cryptography.exceptions import InvalidSignature

from fabguard.ledger.checkpoint import parse_verifier_key
from fabguard.ledger.entry import canonical_json
from fabguard.service.access import tokens
from fabguard.service.ledger import merkle_log
from tests.support import World, tested_device


def _client(world: World, role: str) -> httpx.Client:
    _, secret = tokens.create_token(world.inst, name=role, role=role, actor="test")
    http = world.admin()
    http.headers["Authorization"] = f"Bearer {secret}"
    return http


def test_engineer_sets_rates_and_an_auditor_reads_the_signed_statement(world: World) -> None:
    order = world.order(quota=3)
    fx = world.fixture("fx-1")
    with _client(world, "engineer") as eng:
        r = eng.put("/api/v1/products/sensor/royalty-rate", json={"amount": "0.42", "currency": "EUR"})
        assert r.status_code == 200, r.text
        assert r.json()["amount"] == "0.42" and r.json()["order_id"] is None
        r = eng.put(f"/api/v1/orders/{order}/royalty-rate", json={"amount": "0.40", "currency": "EUR"})
        assert r.status_code == 200 and r.json()["product_id"] == "sensor"
    for serial in ("SN-1", "SN-2"):
        fx.provision(order, serial, tested_device(fx, serial).csr_pem())
    # The statement binds to a stored checkpoint and signs none: an engineer takes one.
    with _client(world, "engineer") as eng:
        assert eng.post("/api/v1/ledger/checkpoint").status_code == 200
    _, _, public_key = parse_verifier_key(merkle_log.public_verifier_key(world.inst))
    with _client(world, "auditor") as aud:
        assert (
            aud.put("/api/v1/products/sensor/royalty-rate", json={"amount": "0", "currency": "EUR"}).status_code == 403
        )
        rates = aud.get("/api/v1/royalties/rates", params={"product_id": "sensor"}).json()
        assert [r["amount"] for r in rates] == ["0.42", "0.40"]
        doc = aud.get("/api/v1/royalties/statement", params={"order_id": order}).json()
        assert doc["report"]["figures"]["totals"] == {"EUR": "0.80"}
        public_key.verify(base64.b64decode(doc["signature"]), canonical_json(doc["report"]))
        for fmt, media in (("csv", "text/csv"), ("pdf", "application/pdf")):
            r = aud.get("/api/v1/royalties/statement", params={"site_id": "cm-a", "format": fmt})
            assert r.status_code == 200 and r.headers["content-type"].startswith(media)
            signature = base64.b64decode(r.headers["X-FabGuard-Signature"])
            public_key.verify(signature, r.content)
            with pytest.raises(InvalidSignature):
                public_key.verify(signature, r.content + b" ")


BAD_RATES = [
    ("/api/v1/products/sensor/royalty-rate", {"amount": 0.42, "currency": "EUR"}, 422, "invalid_request"),
    ("/api/v1/products/sensor/royalty-rate", {"amount": "1e3", "currency": "EUR"}, 422, "invalid_rate"),
    ("/api/v1/products/sensor/royalty-rate", {"amount": "-0.5", "currency": "EUR"}, 422, "invalid_rate"),
    ("/api/v1/products/sensor/royalty-rate", {"amount": "1", "currency": "eur"}, 422, "invalid_currency"),
    (
        "/api/v1/products/sensor/royalty-rate",
        {"amount": "1", "currency": "EUR", "effective_from": "2020-01-01T00:00:00+00:00"},
        422,
        "rate_retroactive",
    ),
    ("/api/v1/products/nope/royalty-rate", {"amount": "1", "currency": "EUR"}, 404, "product_not_found"),
    ("/api/v1/products/NOPE!/royalty-rate", {"amount": "1", "currency": "EUR"}, 404, "product_not_found"),
    ("/api/v1/orders/po-none/royalty-rate", {"amount": "1", "currency": "EUR"}, 404, "order_not_found"),
]

BAD_STATEMENTS = [
    ({"format": "xml"}, 422, "invalid_format"),
    ({"site_id": "cm-z"}, 404, "site_not_found"),
    ({"product_id": "nope"}, 404, "product_not_found"),
    ({"since": "2027-02-01T00:00:00+00:00", "until": "2027-01-01T00:00:00+00:00"}, 422, "invalid_window"),
    ({"since": "2027-02-01T00:00:00"}, 422, "invalid_time"),
]


def test_bad_rates_and_statement_requests_are_refused_with_their_code_and_change_nothing(world: World) -> None:
    with world.admin() as http:
        for path, body, status, code in BAD_RATES:
            r = http.put(path, json=body)
            assert (r.status_code, r.json()["error"]["code"]) == (status, code), (body, r.text)
        assert http.get("/api/v1/royalties/rates").json() == []
        assert [e for e in http.get("/api/v1/events").json() if e["kind"] == "royalty.rate_set"] == []
        for params, status, code in BAD_STATEMENTS:
            r = http.get("/api/v1/royalties/statement", params=params)
            assert (r.status_code, r.json()["error"]["code"]) == (status, code), (params, r.text)
