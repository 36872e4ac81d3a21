"""Creating, rotating, importing and revoking a CA are two people's, on both engines: the request changes
nothing (no CA, no key) until a different person approves; the requester cannot; a request expires;
two approvers at once carry the act out once."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from fabguard.domain.errors import Conflict, FabGuardError, Forbidden
from fabguard.domain.values import CaName, SiteId
from fabguard.service.access import tokens
from fabguard.service.approvals import requests
from fabguard.service.authority import authorities
from fabguard.service.authority.ca_acts import CaCreation, CaRevocation, CaRotation
from fabguard.service.catalog import product_catalog
from fabguard.service.core.instance import Instance
from fabguard.store.models import CertificateAuthority, Event


def _keys(inst: Instance) -> set[str]:
    return {p.name for p in Path(inst.home, "keys").iterdir()}


def _events(inst: Instance, *kinds: str) -> list[Event]:
    with inst.db.read() as s:
        return list(s.execute(select(Event).where(Event.kind.in_(kinds)).order_by(Event.seq)).scalars())


def _people(inst: Instance) -> tuple[tokens.Principal, tokens.Principal]:
    ada, _ = tokens.create_token(inst, name="ada", role="admin", actor="test")
    alex, _ = tokens.create_token(inst, name="alex", role="approver", actor="test")
    return ada, alex


def test_a_new_ca_and_its_key_exist_only_once_a_second_person_approves(any_instance: Instance) -> None:
    inst = any_instance
    product_catalog.create_site(inst, site_id=SiteId("cm-b"), name="CM B", actor="test")
    ada, alex = _people(inst)
    keys_before = _keys(inst)

    asked = requests.request(inst, CaName("issuing-cm-b").value, CaCreation("cm-b", None), by=requests.Person.of(ada))

    assert asked.state == "pending" and asked.kind == "ca.create" and asked.requested_by == ada.actor
    assert "issuing-cm-b" not in {c.name for c in authorities.list_cas(inst)}
    assert _keys(inst) == keys_before  # no key is made before the approval
    with pytest.raises(Forbidden) as own:
        requests.decide(inst, asked.id, approve=True, by=ada)
    assert own.value.code == "same_approver"
    assert _keys(inst) == keys_before

    done = requests.decide(inst, asked.id, approve=True, by=alex)

    assert done.result is not None and done.result["state"] == "active" and done.result["site_id"] == "cm-b"
    assert authorities.get_ca(inst, "issuing-cm-b").state == "active"
    (new_key,) = _keys(inst) - keys_before
    assert new_key.startswith("issuing-cm-b-")
    assert inst.cas.issuer("issuing-cm-b").certificate.issuer == inst.cas.certificate("root").subject
    got = [
        (e.kind, e.actor, e.code)
        for e in _events(inst, "approval.requested", "approval.refused", "approval.approved", "ca.created")
    ]
    assert got == [
        ("approval.requested", ada.actor, None),
        ("approval.refused", ada.actor, "same_approver"),
        ("approval.approved", alex.actor, None),
        ("ca.created", alex.actor, None),
    ]
    created = json.loads(_events(inst, "ca.created")[-1].detail)
    assert created["ca"] == "issuing-cm-b" and created["requested_by"] == ada.actor
    assert created["approval_id"] == asked.id


def test_rotation_and_revocation_wait_for_the_second_person_and_expire(any_instance: Instance) -> None:
    inst = any_instance
    ada, alex = _people(inst)
    rotating = requests.request(inst, "issuing", CaRotation(CaName("issuing-2").value), by=requests.Person.of(ada))
    revoking = requests.request(inst, "station", CaRevocation("ca_compromise", "leak"), by=requests.Person.of(ada))
    assert {c.name: c.state for c in authorities.list_cas(inst)} == {
        "root": "active",
        "issuing": "active",
        "station": "active",
    }
    requests.decide(inst, rotating.id, approve=True, by=alex)
    assert authorities.get_ca(inst, "issuing").state == "retired"
    assert authorities.get_ca(inst, "issuing-2").state == "active"

    real = inst.clock
    inst.clock = lambda: real() + timedelta(hours=inst.limits.approval_hours, seconds=1)
    with pytest.raises(Conflict) as late:
        requests.decide(inst, revoking.id, approve=True, by=alex)
    assert late.value.code == "approval_expired"
    assert authorities.get_ca(inst, "station").state == "active"
    assert [e.code for e in _events(inst, "approval.refused")] == ["approval_expired"]


def test_an_approval_whose_act_became_impossible_is_refused_recorded_and_changes_nothing(
    any_instance: Instance,
) -> None:
    inst = any_instance
    ada, alex = _people(inst)
    first = requests.request(inst, CaName("issuing-x").value, CaCreation(None, None), by=requests.Person.of(ada))
    second = requests.request(inst, CaName("issuing-x").value, CaCreation(None, None), by=requests.Person.of(ada))
    requests.decide(inst, first.id, approve=True, by=alex)
    keys_before = _keys(inst)

    with pytest.raises(Conflict) as taken:
        requests.decide(inst, second.id, approve=True, by=alex)

    assert taken.value.code == "ca_exists"
    assert requests.get_approval(inst, second.id).state == "pending"
    assert _keys(inst) == keys_before
    assert [(e.actor, e.code) for e in _events(inst, "approval.refused")] == [(alex.actor, "ca_exists")]
    assert len(_events(inst, "ca.created")) == 1


def test_two_approvers_at_once_create_the_ca_exactly_once(any_instance: Instance) -> None:
    inst = any_instance
    ada, _ = _people(inst)
    deciders = [tokens.create_token(inst, name=f"approver-{i}", role="approver", actor="test")[0] for i in range(4)]
    asked = requests.request(inst, CaName("issuing-race").value, CaCreation(None, None), by=requests.Person.of(ada))
    keys_before = _keys(inst)
    start = threading.Barrier(len(deciders))
    outcomes: list[str] = []

    def approve(p: tokens.Principal) -> None:
        start.wait()
        try:
            requests.decide(inst, asked.id, approve=True, by=p)
            outcomes.append("approved")
        except FabGuardError as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=approve, args=(p,)) for p in deciders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(outcomes) == ["approval_decided"] * 3 + ["approved"]
    with inst.db.read() as s:
        rows = (
            s.execute(select(CertificateAuthority).where(CertificateAuthority.name == "issuing-race")).scalars().all()
        )
    assert len(rows) == 1 and rows[0].state == "active"
    assert len(_keys(inst) - keys_before) == 1  # one key made, by the one approval that ran
    assert len(_events(inst, "ca.created")) == 1 and len(_events(inst, "approval.approved")) == 1
