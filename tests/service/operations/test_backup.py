"""The backup and restore drill, on each engine: a backup of an instance that is provisioning units at that
moment, restored into a new home, keeps the ledger consistent with an auditor's earlier checkpoint and carries
on without reissuing a serial or reusing a unit of quota. A backup that does not match its manifest is
refused and nothing is written.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from fabguard.api.server import ServerThread
from fabguard.domain.errors import FabGuardError
from fabguard.fixture.client import FabGuardClientError, FixtureClient
from fabguard.fixture.device import SimulatedDevice
from fabguard.ledger.verify import AuditFailure, verify_export
from fabguard.service.core.instance import Instance
from fabguard.service.ledger import merkle_log
from fabguard.service.operations.backup import backup
from fabguard.service.operations.doctor import examine
from fabguard.service.operations.restore import restore
from fabguard.store.eventlog import event_count
from fabguard.store.models import Order, Unit
from tests.service.provisioning.test_quota_concurrency import make_units, upload_passing_tests
from tests.support import World, create_pg_database, drop_pg_database

BEFORE = 6  # units provisioned before the auditor's checkpoint
AFTER = 5  # units the writer still provisions once the backup is taken
UNITS = 80  # a bound: the writer stops long before it runs out


@pytest.fixture
def restore_url(database_url: str | None) -> Iterator[str | None]:
    """Where a backup of this engine restores: the new home's own SQLite file, or a new empty database."""
    if database_url is None:
        yield None
        return
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


class Writer(threading.Thread):
    """A fixture provisioning units one after another through the real server, until told to stop."""

    def __init__(self, client: FixtureClient, order: str, units: list[tuple[str, str]]) -> None:
        super().__init__(daemon=True)
        self.client, self.order, self.units = client, order, units
        self.issued: dict[str, str] = {}
        self.backup_taken = threading.Event()
        self.after_backup = 0
        self.started_units = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for serial, csr in self.units:
                self.issued[serial] = self.client.provision(self.order, serial, csr).certificate_pem
                if len(self.issued) >= 3:
                    self.started_units.set()
                if self.backup_taken.is_set():
                    self.after_backup += 1
                    if self.after_backup >= AFTER:
                        return
        except BaseException as exc:  # reported by the test
            self.error = exc
            self.started_units.set()


def units_by_serial(inst: Instance) -> dict[str, str]:
    with inst.db.read() as s:
        return {serial: pem for serial, pem in s.execute(select(Unit.serial, Unit.certificate_pem)).all()}


def order_used(inst: Instance, order_id: str) -> int:
    with inst.db.read() as s:
        return int(s.execute(select(Order.used).where(Order.id == order_id)).scalar_one())


def test_a_backup_taken_while_provisioning_restores_consistently_and_carries_on(
    any_world: World, tmp_path: Path, database_url: str | None, restore_url: str | None
) -> None:
    w = any_world
    big, small = w.order(quota=1000), w.order(quota=2)
    client = w.fixture("fx-1")
    planned = make_units(UNITS)
    upload_passing_tests(client, [u.serial for u in planned])
    for u in planned[:BEFORE]:
        client.provision(big, u.serial, u.csr)
    for u in planned[BEFORE : BEFORE + 2]:
        client.provision(small, u.serial, u.csr)  # exhausted before the backup
    key = tmp_path / "ledger.pub"
    key.write_text(merkle_log.public_verifier_key(w.inst) + "\n")
    seen_before = tmp_path / "seen-before.txt"  # the auditor's checkpoint, taken before the backup
    seen_before.write_text(merkle_log.make_checkpoint(w.inst).note)

    writer = Writer(client, big, [(u.serial, u.csr) for u in planned[BEFORE + 2 :]])
    writer.start()
    assert writer.started_units.wait(60)
    manifest = backup(w.inst, tmp_path / "backup")  # while the writer provisions
    writer.backup_taken.set()
    writer.join(60)
    assert writer.error is None and not writer.is_alive()
    seen_after = tmp_path / "seen-after.txt"  # an auditor's checkpoint of history the backup does not hold
    seen_after.write_text(merkle_log.make_checkpoint(w.inst).note)
    original = units_by_serial(w.inst)
    w.stop()

    new_home = tmp_path / "restored"
    if restore_url is not None:  # a PostgreSQL backup never restores over a database that holds data
        with pytest.raises(FabGuardError) as refused:
            restore(tmp_path / "backup", new_home, database_url=database_url)
        assert refused.value.code == "restore_target_exists" and not new_home.exists()
        with pytest.raises(FabGuardError) as no_url:
            restore(tmp_path / "backup", new_home)
        assert no_url.value.code == "backup_engine_mismatch" and not new_home.exists()
    done = restore(tmp_path / "backup", new_home, database_url=restore_url)
    inst = Instance.open(new_home)
    try:
        with inst.db.read() as s:
            assert event_count(s) == manifest["ledger"]["event_count"] == done.event_count
        restored = units_by_serial(inst)
        # A prefix of the original's history: what was issued before the backup is there, same certificate;
        # the writer's last units, issued after it, are not.
        assert {u.serial for u in planned[: BEFORE + 2]} <= restored.keys() < original.keys()
        assert all(original[serial] == pem for serial, pem in restored.items())
        assert len(original) - len(restored) >= AFTER
        used_big = order_used(inst, big)
        assert used_big == len(restored) - 2 == manifest["units"] - 2

        # The restored ledger verifies against the checkpoint the auditor took before the backup.
        report = verify_export(
            _export(inst, tmp_path / "export-1"), verifier=key.read_text().strip(), trusted_checkpoints=(seen_before,)
        )
        assert report.trusted_checked == 1 and report.entries >= manifest["ledger"]["event_count"]

        server = ServerThread(inst).start()
        try:
            line = FixtureClient(client.credentials, server=server.url)
            try:
                first = planned[0]
                again = line.provision(big, first.serial, first.csr)  # a retry of a unit issued before the backup
                assert again.replayed and again.certificate_pem == original[first.serial]
                with pytest.raises(FabGuardClientError) as other_key:
                    line.provision(big, first.serial, SimulatedDevice(first.serial).csr_pem())
                assert other_key.value.code == "serial_has_other_key"
                assert order_used(inst, big) == used_big
                *fresh, spare = [u for u in planned if u.serial not in original][:4]
                for u in fresh:
                    assert not line.provision(big, u.serial, u.csr).replayed
                assert order_used(inst, big) == used_big + len(fresh)
                with pytest.raises(FabGuardClientError) as exhausted:  # at quota before the backup, still
                    line.provision(small, spare.serial, spare.csr)
                assert exhausted.value.code == "quota_exhausted"
                assert order_used(inst, small) == 2
            finally:
                line.close()
        finally:
            server.stop()

        # Still consistent with the earlier checkpoint; the auditor's checkpoint of the lost history is not.
        export = _export(inst, tmp_path / "export-2")
        verify_export(export, verifier=key.read_text().strip(), trusted_checkpoints=(seen_before,))
        with pytest.raises(AuditFailure, match=r"fork|truncated"):
            verify_export(export, verifier=key.read_text().strip(), trusted_checkpoints=(seen_after,))
    finally:
        inst.close()


def _export(inst: Instance, out: Path) -> Path:
    merkle_log.export(inst, out)
    return out


@pytest.fixture
def backed_up(world: World, tmp_path: Path) -> Path:
    backup(world.inst, tmp_path / "backup")
    return tmp_path / "backup"


@pytest.mark.parametrize(
    ("damage", "code"),
    [
        (lambda b: (b / "home/keys/issuing.key.pem").write_text("-----BEGIN nothing-----\n"), "backup_tampered"),
        (lambda b: (b / "database/fabguard.db").open("ab").write(b"\0"), "backup_tampered"),
        (lambda b: (b / "home/ca/root.pem").unlink(), "backup_incomplete"),
        (lambda b: (b / "manifest.json").write_text("{not json"), "backup_invalid"),
        (lambda b: (b / "manifest.json").unlink(), "backup_invalid"),
    ],
    ids=["key-altered", "database-altered", "file-missing", "manifest-garbled", "manifest-missing"],
)
def test_a_damaged_backup_is_refused_and_nothing_is_written(
    backed_up: Path, tmp_path: Path, damage: object, code: str, caplog: pytest.LogCaptureFixture
) -> None:
    damage(backed_up)  # type: ignore[operator]
    with caplog.at_level(logging.WARNING, "fabguard.backup"), pytest.raises(FabGuardError) as refused:
        restore(backed_up, tmp_path / "new")
    assert refused.value.code == code and f"[{code}]" in caplog.text
    assert not (tmp_path / "new").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".new.")]


def test_a_manifest_that_names_a_file_outside_the_backup_is_refused(backed_up: Path, tmp_path: Path) -> None:
    manifest = json.loads((backed_up / "manifest.json").read_text())
    manifest["files"]["home/../../evil"] = {"sha256": "0" * 64, "bytes": 0}
    (backed_up / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FabGuardError) as refused:
        restore(backed_up, tmp_path / "new")
    assert refused.value.code == "backup_invalid" and not (tmp_path / "new").exists()


def test_restore_never_overwrites_an_instance_and_backup_never_overwrites_a_directory(
    world: World, backed_up: Path, tmp_path: Path
) -> None:
    before = (world.inst.home / "instance.json").read_bytes()
    with pytest.raises(FabGuardError) as refused:
        restore(backed_up, world.inst.home)
    assert refused.value.code == "restore_target_exists"
    assert (world.inst.home / "instance.json").read_bytes() == before
    with pytest.raises(FabGuardError) as again:
        backup(world.inst, backed_up)
    assert again.value.code == "backup_target_exists"
    with pytest.raises(FabGuardError) as wrong_engine:
        restore(backed_up, tmp_path / "new", database_url="postgresql+psycopg://u@127.0.0.1:1/x")
    assert wrong_engine.value.code == "backup_engine_mismatch" and not (tmp_path / "new").exists()


def test_a_backup_holds_no_decrypted_key(backed_up: Path) -> None:
    keys = sorted((backed_up / "home" / "keys").iterdir())  # root, issuing, station, ledger, server, firmware
    assert len(keys) == 6 and all("ENCRYPTED PRIVATE KEY" in k.read_text() for k in keys)
    assert all(k.stat().st_mode & 0o077 == 0 for k in keys)
    assert b"PRIVATE KEY-----" not in (backed_up / "database" / "fabguard.db").read_bytes().replace(
        b"ENCRYPTED PRIVATE KEY-----", b""
    )


def test_missing_postgresql_tools_are_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from fabguard.store import backups

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(backups, "PG_BIN_GLOB", str(tmp_path / "no-postgresql" / "*" / "bin"))
    with pytest.raises(FabGuardError, match="pg_dump is not installed") as missing:
        backups.pg_tool("pg_dump")
    assert missing.value.code == "configuration_error"


def test_the_database_copy_and_the_restored_database_are_the_owners_alone(backed_up: Path, tmp_path: Path) -> None:
    """The database holds token hashes, enrolment tokens and every unit: the backup's copy and the restored
    SQLite file are as private as the original (``fabguard doctor`` fails a restored instance otherwise)."""
    copies = list((backed_up / "database").iterdir())
    assert copies and all(p.stat().st_mode & 0o077 == 0 for p in copies)
    home = tmp_path / "restored"
    restore(backed_up, home)
    assert (home / "fabguard.db").stat().st_mode & 0o077 == 0
    restored = Instance.open(home)
    try:
        permissions = [f for f in examine(restored, {}) if f.check == "permissions"]
    finally:
        restored.close()
    assert [f.status for f in permissions] == ["ok"], permissions
