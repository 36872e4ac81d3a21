"""Rotating the ledger's checkpoint key with an overlap, on both engines: both keys sign during the overlap,
the new one alone after it, and an auditor who kept the first key still verifies every checkpoint, report and
export through the published chain."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from fabguard.domain.errors import FabGuardError
from fabguard.ledger.checkpoint import CheckpointError, open_signed_checkpoint
from fabguard.ledger.keychain import KEYCHAIN_FILE, trusted_keys
from fabguard.ledger.verify import AuditFailure, verify_export, verify_report
from fabguard.service.access import tokens
from fabguard.service.core.events import list_events
from fabguard.service.core.instance import Instance
from fabguard.service.ledger import ledger_keys, merkle_log, reports
from fabguard.store.eventlog import append_event
from tests.support import World


def _grow(inst: Instance, n: int) -> None:
    with inst.db.transaction() as s:
        for i in range(n):
            append_event(s, "test.event", at=inst.clock(), actor="test", detail={"i": i})


def _signature_lines(note: str) -> int:
    return sum(1 for line in note.split("\n\n", 1)[1].splitlines() if line)


def test_both_keys_sign_during_the_overlap_and_the_new_one_alone_after(any_instance: Instance) -> None:
    inst = any_instance
    _grow(inst, 3)
    old = merkle_log.public_verifier_key(inst)
    before = merkle_log.make_checkpoint(inst)
    assert _signature_lines(before.note) == 1

    new = ledger_keys.rotate(inst, actor="admin").public.verifier
    assert merkle_log.public_verifier_key(inst) == old  # single-signature documents stay with the old key
    _grow(inst, 2)
    overlap = merkle_log.make_checkpoint(inst)
    assert _signature_lines(overlap.note) == 2
    assert open_signed_checkpoint(overlap.note, old).size == overlap.size
    assert open_signed_checkpoint(overlap.note, new).size == overlap.size

    retired = ledger_keys.finish_rotation(inst, actor="admin")
    assert retired.public.verifier == old and retired.public.until_size is not None
    assert merkle_log.public_verifier_key(inst) == new
    _grow(inst, 1)
    after = merkle_log.make_checkpoint(inst)
    assert _signature_lines(after.note) == 1
    open_signed_checkpoint(after.note, new)
    with pytest.raises(CheckpointError):
        open_signed_checkpoint(after.note, old)

    chain = ledger_keys.document(inst)
    assert [k.verifier for k in trusted_keys(chain, old)] == [old, new]
    kinds = [e["kind"] for e in list_events(inst, limit=1000)]
    assert [k for k in kinds if k.startswith("ledger.key")] == ["ledger.key_rotated", "ledger.key_retired"]


def test_a_second_rotation_waits_for_the_first_to_finish(any_instance: Instance) -> None:
    inst = any_instance
    with pytest.raises(FabGuardError) as nothing:
        ledger_keys.finish_rotation(inst, actor="admin")
    assert nothing.value.code == "no_key_rotation"
    ledger_keys.rotate(inst, actor="admin")
    with pytest.raises(FabGuardError) as busy:
        ledger_keys.rotate(inst, actor="admin")
    assert busy.value.code == "key_rotation_in_progress"
    ledger_keys.finish_rotation(inst, actor="admin")
    third = ledger_keys.rotate(inst, actor="admin")  # the next rotation, from the key that signs now
    assert third.generation == 2
    assert len(trusted_keys(ledger_keys.document(inst), merkle_log.public_verifier_key(inst))) == 3


def test_racing_rotations_make_exactly_one_new_key(any_instance: Instance) -> None:
    inst = any_instance
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def attempt() -> None:
        barrier.wait()
        try:
            ledger_keys.rotate(inst, actor="admin")
            outcomes.append("rotated")
        except FabGuardError as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("rotated") == 1 and set(outcomes) <= {"rotated", "key_rotation_in_progress"}
    chain = ledger_keys.document(inst)
    assert len(chain["keys"]) == 2
    # The winner's key file is there (a loser removed only its own), and it is the one the chain names.
    files = sorted(p.name for p in inst.keys.directory.glob("ledger*.key.pem"))
    assert len(files) == 2 and "ledger.key.pem" in files
    signing = dict(ledger_keys.signing_keys(inst))
    assert list(signing) == [k["verifier"] for k in chain["keys"]]


def test_an_export_across_a_rotation_verifies_with_the_first_key_kept(any_instance: Instance, tmp_path: Path) -> None:
    inst = any_instance
    kept = merkle_log.public_verifier_key(inst)
    _grow(inst, 4)
    merkle_log.make_checkpoint(inst)
    ledger_keys.rotate(inst, actor="admin")
    _grow(inst, 3)
    merkle_log.make_checkpoint(inst)
    ledger_keys.finish_rotation(inst, actor="admin")
    _grow(inst, 2)
    merkle_log.export(inst, tmp_path / "export")
    report = verify_export(tmp_path / "export", verifier=kept)
    assert report.entries == merkle_log.entry_count(inst)
    assert any("rotated its key" in n for n in report.notes)

    # Without the chain, the first key alone cannot vouch for the newest checkpoint.
    (tmp_path / "export" / KEYCHAIN_FILE).rename(tmp_path / "chain.json")
    with pytest.raises(AuditFailure):
        verify_export(tmp_path / "export", verifier=kept)
    # A chain whose new key's endorsement was changed is refused.
    chain = json.loads((tmp_path / "chain.json").read_text())
    chain["keys"][1]["from_size"] = 0
    (tmp_path / "export" / KEYCHAIN_FILE).write_text(json.dumps(chain))
    with pytest.raises(AuditFailure, match=KEYCHAIN_FILE):
        verify_export(tmp_path / "export", verifier=kept)


def test_a_report_signed_after_the_rotation_verifies_with_the_old_key_and_the_chain(
    instance: Instance, tmp_path: Path
) -> None:
    inst = instance
    kept = merkle_log.public_verifier_key(inst)
    _grow(inst, 2)
    ledger_keys.rotate(inst, actor="admin")
    ledger_keys.finish_rotation(inst, actor="admin")
    merkle_log.make_checkpoint(inst)
    report = reports.reconciliation_report(inst)
    path = tmp_path / "report.json"
    path.write_text(reports.report_json(report))
    chain = ledger_keys.document(inst)
    assert verify_report(path, kept, chain) == "report.json"
    with pytest.raises(AuditFailure):
        verify_report(path, kept)  # the kept key alone did not sign it


def test_the_key_chain_is_published_and_only_an_admin_rotates(world: World) -> None:
    with world.admin() as http:
        first = http.get("/api/v1/ledger/keys").json()
        assert len(first["keys"]) == 1 and first["keys"][0]["from_size"] == 0
        started = http.post("/api/v1/ledger/keys/rotate")
        assert started.status_code == 200, started.text
        assert len(started.json()["keys"]) == 2
        again = http.post("/api/v1/ledger/keys/rotate")
        assert again.status_code == 409 and again.json()["error"]["code"] == "key_rotation_in_progress"
        note = http.post("/api/v1/ledger/checkpoint", params={"format": "note"}).text
        assert _signature_lines(note) == 2
        done = http.post("/api/v1/ledger/keys/finish-rotation")
        assert done.status_code == 200 and done.json()["keys"][0]["until_size"] is not None
        kept = first["keys"][0]["verifier"]
        assert len(trusted_keys(done.json(), kept)) == 2
    _, secret = tokens.create_token(world.inst, name="eng", role="engineer", actor="test")
    with world.admin() as eng:
        eng.headers["Authorization"] = f"Bearer {secret}"
        refused = eng.post("/api/v1/ledger/keys/rotate")
        assert refused.status_code == 403
        assert len(eng.get("/api/v1/ledger/keys").json()["keys"]) == 2
