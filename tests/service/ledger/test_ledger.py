"""The server's ledger after a real production run: its checkpoint, proofs and entries agree, on both engines."""

from __future__ import annotations

import base64

from sqlalchemy import select

from fabguard.fixture.simulator import LineConfig, ProductionLine
from fabguard.ledger import merkle
from fabguard.ledger.checkpoint import open_signed_checkpoint
from fabguard.store.models import Event
from tests.support import World


def test_checkpoint_root_matches_the_entries_after_a_simulated_line(any_world: World) -> None:
    order = any_world.order(quota=15)
    creds = [any_world.credentials(f"fx-{i}") for i in range(3)]
    with any_world.admin() as http:
        early = http.post("/api/v1/ledger/checkpoint").json()
        with ProductionLine(creds, LineConfig(order_id=order, units=20, clones=1, skip_tests=1)) as line:
            report = line.run()
        key = http.get("/api/v1/ledger/key").json()["verifier_key"]
        latest = http.post("/api/v1/ledger/checkpoint", params={"format": "note"}).text
        assert http.get("/api/v1/ledger/checkpoint", params={"format": "note"}).text == latest
        cp = open_signed_checkpoint(latest, key)
        serial = next(iter(report.certificates))
        inclusion = http.get("/api/v1/ledger/proof/inclusion", params={"serial": serial, "size": cp.size}).json()
        consistency = http.get(
            "/api/v1/ledger/proof/consistency", params={"first": early["size"], "second": cp.size}
        ).json()

    with any_world.inst.db.read() as s:
        entries = [bytes(e) for e in s.execute(select(Event.entry).order_by(Event.seq)).scalars()]
    assert cp.size == len(entries)
    assert cp.root == merkle.mth([merkle.leaf_hash(e) for e in entries])

    entry = inclusion["entry"].encode()
    assert f'"serial":"{serial}"' in inclusion["entry"] and '"kind":"unit.provisioned"' in inclusion["entry"]
    merkle.verify_inclusion(
        merkle.leaf_hash(entry), inclusion["index"], cp.size, [base64.b64decode(p) for p in inclusion["proof"]], cp.root
    )
    merkle.verify_consistency(
        early["size"],
        cp.size,
        base64.b64decode(early["root"]),
        cp.root,
        [base64.b64decode(p) for p in consistency["proof"]],
    )


def test_ledger_needs_a_token_and_rejects_sizes_past_the_tree(world: World) -> None:
    import ssl

    import httpx

    with httpx.Client(base_url=world.url, verify=ssl.create_default_context(cafile=str(world.root_ca))) as anon:
        assert anon.get("/api/v1/ledger/checkpoint").status_code == 401
    with world.admin() as http:
        r = http.get("/api/v1/ledger/proof/consistency", params={"first": 1, "second": 10**6})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_tree_size"
        r = http.get("/api/v1/ledger/proof/inclusion", params={"serial": "SN-NEVER"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "unit_not_found"
