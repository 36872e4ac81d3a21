"""Field checks at cloud scale over the real API on both engines (issue 28 item 4): stateless nonces that
no forger can make, a batch of many devices' answers decided together, and a nonce single-use however
many threads and endpoints answer it at once."""

from __future__ import annotations

import json
import secrets
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from fabguard.pki.field_nonce import make_nonce, nonce_digest
from fabguard.service.access import tokens
from fabguard.service.field.checks import NONCE_KEY
from fabguard.store.field_models import FieldCheck, FieldNonce
from fabguard.store.models import Event
from tests.service.field.test_field import Field, fw

__all__ = ["fw"]  # the module's world on each engine (tests/service/field/test_field.py)


def _count(fw: Field, what: Any) -> int:
    with fw.inst.db.read() as s:
        return int(s.execute(select(func.count()).select_from(what)).scalar_one())


def _last_event(fw: Field) -> Event:
    with fw.inst.db.read() as s:
        return s.execute(select(Event).order_by(Event.seq.desc()).limit(1)).scalar_one()


def test_a_tampered_or_forged_nonce_is_unknown_recorded_and_spends_nothing(fw: Field) -> None:
    nonce = fw.challenge()
    raw = bytes.fromhex(nonce)
    later_expiry = raw[:1] + (int.from_bytes(raw[1:5], "big") + 3600).to_bytes(4, "big") + raw[5:]
    other_mac = raw[:-1] + bytes([raw[-1] ^ 0x80])
    theirs, _ = make_nonce(secrets.token_bytes(32), fw.inst.clock())  # another instance's key
    replay_set = _count(fw, FieldNonce)
    for forged in (later_expiry, other_mac, theirs, secrets.token_bytes(32)):
        r = fw.verify(fw.good.field_answer(forged.hex()))
        assert (r.status_code, r.json()["error"]["code"]) == (404, "nonce_unknown"), r.text
        last = _last_event(fw)
        assert (last.kind, last.code) == ("field.refused", "nonce_unknown")
    assert _count(fw, FieldNonce) == replay_set
    assert fw.verify(fw.good.field_answer(nonce)).json()["genuine"] is True  # the real one was not spent


def test_one_nonce_answered_by_16_threads_through_both_endpoints_is_genuine_once(fw: Field) -> None:
    nonce = fw.challenge()
    body = fw.good.field_answer(nonce)
    checks = _count(fw, FieldCheck)

    def answer(i: int) -> list[dict[str, Any]]:
        if i % 2:
            r = fw.http.post("/api/v1/field/verify-batch", json={"answers": [body, body]})
            assert r.status_code == 200, r.text
            return list(r.json()["results"])
        r = fw.verify(body)
        return [r.json() if r.status_code == 200 else {**r.json(), "status": r.status_code}]

    with ThreadPoolExecutor(16) as pool:
        results = [x for one in pool.map(answer, range(16)) for x in one]
    assert len(results) == 24
    genuine = [x for x in results if x.get("genuine") is True]
    refused = [x["error"]["code"] for x in results if "error" in x]
    assert len(genuine) == 1 and refused == ["nonce_used"] * 23, results
    assert all(x["status"] == 409 for x in results if "status" in x)
    assert _count(fw, FieldCheck) == checks + 1
    with fw.inst.db.read() as s:
        assert s.get(FieldNonce, nonce_digest(bytes.fromhex(nonce))) is not None


def test_a_batch_answers_each_device_in_order_and_records_every_outcome(fw: Field) -> None:
    n1, n2, n3 = fw.challenge(), fw.challenge(), fw.challenge()
    key = fw.inst.keys.secret(NONCE_KEY)
    expired, _ = make_nonce(key, fw.inst.clock() - timedelta(minutes=6))  # ours, but past its expiry
    answers = [
        fw.renewed.field_answer(n1, source="eu-west"),  # SN-F3: checked nowhere else yet, so no clone signal
        {**fw.good.field_answer(n2), "signature": "not base64!"},
        fw.good.field_answer("ab" * 32),
        fw.renewed.field_answer(n1, source="eu-west"),
        fw.revoked.field_answer(n3),
        fw.good.field_answer(expired.hex()),
        {**fw.good.field_answer(n2), "source": "\u0000bad"},
    ]
    before = _last_event(fw).seq
    r = fw.http.post("/api/v1/field/verify-batch", json={"answers": answers})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert results[0]["genuine"] is True and results[0]["serial"] == "SN-F3" and results[0]["source"] == "eu-west"
    assert [x.get("error", {}).get("code") for x in results] == [
        None,
        "field_signature_malformed",
        "nonce_unknown",
        "nonce_used",
        None,
        "nonce_expired",
        "field_source_invalid",
    ]
    assert (results[4]["genuine"], results[4]["reason"], results[4]["clone"]) == (
        False,
        "unit_revoked",
        "revoked_active",
    )
    with fw.inst.db.read() as s:
        events = s.execute(select(Event).where(Event.seq > before).order_by(Event.seq)).scalars().all()
    assert results[0]["seq"] is None  # genuine, no clone signal: a field_checks row, no event (ADR 0015)
    assert [(e.kind, e.code) for e in events] == [
        ("field.refused", "field_signature_malformed"),
        ("field.refused", "nonce_unknown"),
        ("field.refused", "nonce_used"),
        ("field.checked", "unit_revoked"),
        ("field.refused", "nonce_expired"),
        ("field.refused", "field_source_invalid"),
    ]
    assert [e.seq for e in events if e.kind == "field.checked"] == [results[4]["seq"]]
    assert json.loads(events[0].detail)["client"] == "127.0.0.1"
    with fw.inst.db.read() as s:
        assert [s.get(FieldCheck, x["check_id"]).genuine for x in (results[0], results[4])] == [True, False]
    assert fw.verify(fw.good.field_answer(n2)).json()["genuine"] is True  # a malformed answer spent nothing


def test_challenges_come_many_at_once_and_batches_have_bounds(fw: Field) -> None:
    r = fw.http.post("/api/v1/field/challenges", json={"count": 3})
    assert r.status_code == 200, r.text
    nonces = [c["nonce"] for c in r.json()["challenges"]]
    assert len(set(nonces)) == 3
    answers = [fw.renewed.field_answer(n, source="eu-west") for n in nonces]  # the place of its only checks
    results = fw.http.post("/api/v1/field/verify-batch", json={"answers": answers}).json()["results"]
    assert [x["genuine"] for x in results] == [True, True, True]
    # the second and third checks of one serial from the same place in one group show no clone
    assert [x["clone"] for x in results] == [None, None, None]
    limit = fw.inst.limits.max_field_batch
    for path, body in (
        ("/api/v1/field/challenges", {"count": 0}),
        ("/api/v1/field/challenges", {"count": limit + 1}),
        ("/api/v1/field/verify-batch", {"answers": []}),
        ("/api/v1/field/verify-batch", {"answers": [answers[0]] * (limit + 1)}),
    ):
        r = fw.http.post(path, json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "field_batch_invalid"), (path, r.text)


def test_one_serial_from_two_places_in_one_batch_is_a_clone_signal(fw: Field) -> None:
    answers = [fw.good.field_answer(fw.challenge(), source=place) for place in ("kiosk-rome", "kiosk-nairobi")]
    results = fw.http.post("/api/v1/field/verify-batch", json={"answers": answers}).json()["results"]
    assert results[0]["genuine"] and results[1]["genuine"]
    assert (results[1]["clone"], results[1]["other_place"]) == ("two_places", "kiosk-rome")


def _field_writer_samples(fw: Field, secret: str) -> dict[str, float]:
    with fw.world.admin() as client:
        scraped = client.get("/metrics", headers={"Authorization": f"Bearer {secret}"})
    assert scraped.status_code == 200, scraped.text
    return {
        s.name: s.value
        for family in text_string_to_metric_families(scraped.text)
        for s in family.samples
        if s.name.startswith(("fabguard_field_group_checks", "fabguard_field_queue_requests"))
    }


def test_the_field_writers_groups_and_queue_are_metrics(fw: Field) -> None:
    _, secret = tokens.create_token(fw.inst, name=f"prom-{secrets.token_hex(4)}", role="metrics", actor="test")
    before = _field_writer_samples(fw, secret)
    answers = [fw.good.field_answer(fw.challenge(), source="kiosk-rome") for _ in range(3)]
    r = fw.http.post("/api/v1/field/verify-batch", json={"answers": answers})
    assert r.status_code == 200, r.text
    after = _field_writer_samples(fw, secret)
    assert after["fabguard_field_group_checks_sum"] - before["fabguard_field_group_checks_sum"] == 3
    assert after["fabguard_field_group_checks_count"] - before["fabguard_field_group_checks_count"] == 1
    assert after["fabguard_field_queue_requests"] == 0
