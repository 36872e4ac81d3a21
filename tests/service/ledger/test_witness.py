"""Cosigned checkpoints on the server, both engines: a witness cosigns what it checked, the server keeps only
cosignatures that verify with a registered key, the export carries them and the auditor counts them."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import func, select

from fabguard.domain.errors import FabGuardError
from fabguard.domain.values import SiteId
from fabguard.ledger.cosignature import (
    CosignatureError,
    cosign,
    cosigner_verifier_key,
    parse_cosigner_key,
    require_export_cosignatures,
    valid_cosigners,
)
from fabguard.ledger.verify import verify_export
from fabguard.ledger.witness import AddCheckpoint, WitnessState, check_extension
from fabguard.service.catalog import product_catalog
from fabguard.service.core.instance import Instance
from fabguard.service.ledger import merkle_log, witness
from fabguard.store.models import Event
from fabguard.store.witness_models import CosignatureRow

NAME = "cm-a.example/witness"


class Site:
    """A CM site's witness, in memory: its key and its state."""

    def __init__(self, inst: Instance, name: str = NAME) -> None:
        self.name = name
        self.key = ed25519.Ed25519PrivateKey.generate()
        self.state = WitnessState(merkle_log.origin(inst))
        self.log_key = merkle_log.public_verifier_key(inst)
        self.state_body = ""

    @property
    def verifier(self) -> str:
        return cosigner_verifier_key(self.name, self.key.public_key())

    def cosign(self, inst: Instance) -> tuple[int, str]:
        request = AddCheckpoint.parse(witness.cosign_request(inst, self.state.size, sign_checkpoint=True))
        cp = check_extension(self.state, request, self.log_key)
        self.state = WitnessState(cp.origin, cp.size, cp.root)
        self.state_body = cp.body()
        return cp.size, cosign(cp.body(), self.name, self.key, int(time.time()))


def _grow(inst: Instance, *names: str) -> None:
    for n in names:
        product_catalog.create_site(inst, site_id=SiteId(n), name=n, actor="test")


def _registered(inst: Instance) -> Site:
    _grow(inst, "cm-a")
    w = Site(inst)
    witness.register_witness(inst, site_id=SiteId("cm-a"), verifier_key=w.verifier, actor="test")
    return w


@pytest.fixture
def site(any_instance: Instance) -> Site:
    return _registered(any_instance)


@pytest.fixture
def sqlite_site(instance: Instance) -> Site:
    """For checks that do not depend on the engine."""
    return _registered(instance)


def _rows(inst: Instance) -> int:
    with inst.db.read() as s:
        return int(s.execute(select(func.count()).select_from(CosignatureRow)).scalar_one())


def test_a_cosigned_checkpoint_is_served_exported_and_counted_by_the_auditor(
    any_instance: Instance, site: Site, tmp_path: Path
) -> None:
    inst = any_instance
    with inst.db.read() as s:
        registered = s.execute(select(Event).where(Event.kind == "witness.registered")).scalar_one()
    assert registered.actor == "test" and NAME in registered.entry.decode()
    _grow(inst, "cm-b")
    first, line = site.cosign(inst)
    assert witness.add_cosignatures(inst, witness.Sender("cm-a op", "cm-a"), size=first, lines=line) == [NAME]
    _grow(inst, "cm-c", "cm-d")
    size, line = site.cosign(inst)
    assert size > first
    witness.add_cosignatures(inst, witness.Sender("cm-a op", "cm-a"), size=size, lines=line)
    witness.add_cosignatures(inst, witness.Sender("cm-a op", "cm-a"), size=size, lines=line)  # idempotent
    again = cosign(site.state_body, NAME, site.key, int(time.time()) - 1)  # the same witness, another time
    witness.add_cosignatures(inst, witness.Sender("cm-a op", "cm-a"), size=size, lines=again + line)
    assert _rows(inst) == 2

    served = witness.cosigned_checkpoint(inst)
    key = parse_cosigner_key(site.verifier)
    assert served["size"] == size and served["witnesses"] == [NAME]
    assert list(valid_cosigners(str(served["note"]), [key])) == [key.verifier_key]

    merkle_log.export(inst, tmp_path / "export")
    verify_export(tmp_path / "export", verifier=site.log_key)  # the log's own signatures still verify
    now = int(time.time())
    found = require_export_cosignatures(tmp_path / "export", [key], 1, size=size, now=now)
    assert found.cosigners == {key.verifier_key: found.cosigners[key.verifier_key]}
    # The export's newest checkpoint is the one of size ``size`` (nothing was added since): it passes...
    assert require_export_cosignatures(tmp_path / "export", [key], 1, now=now).size == size
    # ...but two witnesses are not there, and the named older one has only its own.
    other = parse_cosigner_key(
        cosigner_verifier_key("cm-b.example/w", ed25519.Ed25519PrivateKey.generate().public_key())
    )
    with pytest.raises(CosignatureError, match="carries 1 valid cosignatures of the 2 witnesses given"):
        require_export_cosignatures(tmp_path / "export", [key, other], 2, now=now)
    _grow(inst, "cm-e")
    merkle_log.export(inst, tmp_path / "later")
    with pytest.raises(CosignatureError, match="carries 0 valid cosignatures"):
        require_export_cosignatures(tmp_path / "later", [key], 1, now=now)


def test_a_cosignature_by_an_unregistered_key_is_refused_and_nothing_kept(
    instance: Instance, sqlite_site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    any_instance = instance
    stranger = Site(any_instance, "stranger.example/witness")
    size, line = stranger.cosign(any_instance)
    with pytest.raises(FabGuardError) as exc:
        witness.add_cosignatures(any_instance, witness.Sender("x"), size=size, lines=line)
    assert (exc.value.code, exc.value.status) == ("witness_unknown", 403)
    # Same name as the registered witness, another key: unknown too (name and key id both must match).
    impostor = Site(any_instance, NAME)
    size, line = impostor.cosign(any_instance)
    with pytest.raises(FabGuardError) as exc:
        witness.add_cosignatures(any_instance, witness.Sender("x"), size=size, lines=line)
    assert exc.value.code == "witness_unknown"
    assert _rows(any_instance) == 0
    assert any("cosignature refused" in r.message and "witness_unknown" in r.message for r in caplog.records)


def test_an_old_cosignature_replayed_for_a_new_checkpoint_is_refused(any_instance: Instance, site: Site) -> None:
    size, line = site.cosign(any_instance)
    _grow(any_instance, "cm-b")
    newer = merkle_log.make_checkpoint(any_instance).size
    with pytest.raises(CosignatureError, match="does not verify"):
        witness.add_cosignatures(any_instance, witness.Sender("x"), size=newer, lines=line)
    with pytest.raises(FabGuardError) as exc:
        witness.add_cosignatures(any_instance, witness.Sender("x"), size=newer + 50, lines=line)
    assert exc.value.code == "checkpoint_not_found"
    # An operator of another site cannot hand in this site's cosignature, even a valid one.
    with pytest.raises(FabGuardError) as exc:
        witness.add_cosignatures(any_instance, witness.Sender("op", "cm-b"), size=size, lines=line)
    assert exc.value.code == "forbidden"
    assert _rows(any_instance) == 0


def test_a_cosignature_dated_before_its_checkpoint_or_in_the_future_is_refused(
    instance: Instance, sqlite_site: Site
) -> None:
    any_instance, site = instance, sqlite_site
    request = AddCheckpoint.parse(witness.cosign_request(any_instance, 0, sign_checkpoint=True))
    cp = check_extension(site.state, request, site.log_key)
    for when in (int(time.time()) - 3600, int(time.time()) + 3600):
        line = cosign(cp.body(), NAME, site.key, when)
        with pytest.raises(CosignatureError, match="outside the checkpoint's signing"):
            witness.add_cosignatures(any_instance, witness.Sender("x"), size=cp.size, lines=line)


def test_registering_a_witness_checks_the_key_the_site_and_duplicates(any_instance: Instance, site: Site) -> None:
    cases = [
        ("cm-a", "not-a-key", "witness_key_invalid"),
        ("nowhere", Site(any_instance, "n.example/w").verifier, "site_not_found"),
        ("cm-a", site.verifier, "witness_exists"),
    ]
    for site_id, key, code in cases:
        with pytest.raises(FabGuardError) as exc:
            witness.register_witness(any_instance, site_id=SiteId(site_id), verifier_key=key, actor="test")
        assert exc.value.code == code
    assert [w.name for w in witness.list_witnesses(any_instance)] == [NAME]


def test_the_same_cosignature_sent_at_once_from_several_threads_is_kept_once(
    any_instance: Instance, site: Site
) -> None:
    size, line = site.cosign(any_instance)
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(
                lambda _: witness.add_cosignatures(any_instance, witness.Sender("x"), size=size, lines=line), range(8)
            )
        )
    assert results == [[NAME]] * 8 and _rows(any_instance) == 1


def test_a_witness_ahead_of_the_log_is_told_so(instance: Instance) -> None:
    size = merkle_log.latest_checkpoint(instance).size
    with pytest.raises(FabGuardError) as exc:
        witness.cosign_request(instance, size + 1)
    assert exc.value.code == "invalid_tree_size" and "saw another log" in exc.value.message
    request = AddCheckpoint.parse(witness.cosign_request(instance, size))
    assert (request.old, request.proof) == (size, ())


def test_a_cosign_request_read_hands_out_the_newest_stored_checkpoint_and_signs_none(any_instance: Instance) -> None:
    with pytest.raises(FabGuardError) as exc:
        witness.cosign_request(any_instance, 0)
    assert exc.value.code == "checkpoint_not_found" and "POST /api/v1/ledger/checkpoint" in exc.value.message
    stored = merkle_log.make_checkpoint(any_instance)
    _grow(any_instance, "cm-later")  # the tree grows past the newest checkpoint
    request = AddCheckpoint.parse(witness.cosign_request(any_instance, 0))
    assert (request.old, request.note) == (0, stored.note)
    assert [c.size for c in merkle_log.checkpoints(any_instance)] == [stored.size]
    # The command line's hand-off signs one of the whole tree first (the operator's act).
    witness.cosign_request(any_instance, 0, sign_checkpoint=True)
    assert merkle_log.checkpoints(any_instance)[0].size == merkle_log.entry_count(any_instance)
