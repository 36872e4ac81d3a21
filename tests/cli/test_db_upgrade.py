"""Upgrades on purpose: a database an older release made (its schema at revision 0016, with its data) is
refused by every command, ``serve`` included, with what to run; ``fabguard db check`` says it is behind;
``fabguard db upgrade`` brings it to the code's revision with its data kept. On both engines."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from fabguard.cli.main import app
from fabguard.domain.errors import SchemaMismatch
from fabguard.service.access import tokens
from fabguard.service.catalog import orders
from fabguard.service.core.instance import Instance
from fabguard.service.core.seeding import init_instance
from fabguard.store.db import Database, sqlite_url
from fabguard.store.migrate import code_revision, database_revision, upgrade

OLD_RELEASE = "0016"  # before people (0017): its tokens get their people on the way up
runner = CliRunner()


def fg(home: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--home", str(home), *args], env={"COLUMNS": "300"}, catch_exceptions=False)
    return result.exit_code, " ".join(result.output.split())


def _database(home: Path, database_url: str | None) -> Database:
    return Database(database_url or sqlite_url(home / "fabguard.db"))


def _as_an_older_release(home: Path, database_url: str | None) -> str:
    """Replace the instance's database by one an older release made: schema at ``OLD_RELEASE``, with a
    product, a site, an order with units used and an admin token. Returns the token's secret."""
    if database_url is None:
        for leftover in home.glob("fabguard.db*"):
            leftover.unlink()
    db = _database(home, database_url)
    try:
        if database_url is not None:
            with db.engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
        upgrade(db, OLD_RELEASE)
        secret = "fgt_" + secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO counters (name, value) VALUES ('events', 0)"))
            conn.execute(
                text(
                    "INSERT INTO products (id, name, key_types, created_at, attestation_policy) "
                    "VALUES ('sensor', 'Sensor', 'ec-p256', :now, 'off')"
                ),
                {"now": now},
            )
            conn.execute(text("INSERT INTO sites (id, name, created_at) VALUES ('cm-a', 'CM A', :now)"), {"now": now})
            conn.execute(
                text(
                    "INSERT INTO orders (id, product_id, site_id, quota, used, state, valid_from, valid_until, "
                    "created_at, created_by, issuing_ca) VALUES ('po-old', 'sensor', 'cm-a', 500, 7, 'active', "
                    ":now, :until, :now, 'erin (0123456789abcdef)', 'issuing')"
                ),
                {"now": now, "until": now + timedelta(days=30)},
            )
            conn.execute(
                text(
                    "INSERT INTO api_tokens (id, name, role, token_hash, created_at, expires_at) "
                    "VALUES ('0123456789abcdef', 'erin', 'admin', :hash, :now, :until)"
                ),
                {"hash": hashlib.sha256(secret.encode()).hexdigest(), "now": now, "until": now + timedelta(days=90)},
            )
        assert database_revision(db) == OLD_RELEASE
        return secret
    finally:
        db.dispose()


@pytest.fixture
def old_home(tmp_path: Path, database_url: str | None) -> tuple[Path, str | None, str]:
    home = tmp_path / "home"
    init_instance(home, organization="Acme Devices", database_url=database_url)
    return home, database_url, _as_an_older_release(home, database_url)


def test_commands_refuse_a_database_behind_the_code_until_db_upgrade_brings_it_there_with_its_data(
    old_home: tuple[Path, str | None, str],
) -> None:
    home, database_url, secret = old_home
    head = code_revision()

    code, out = fg(home, "db", "check")
    assert code == 1, out
    assert f"database: {OLD_RELEASE}; code: {head}: behind" in out and "fabguard db upgrade" in out

    for command in (("order", "list"), ("serve", "--port", "0")):
        code, out = fg(home, *command)
        assert code == 3, (command, out)
        assert "[database_behind_code]" in out and f"revision {OLD_RELEASE}" in out, out
        assert "fabguard db upgrade" in out and "serve --migrate" in out and "Traceback" not in out
    db = _database(home, database_url)
    try:
        assert database_revision(db) == OLD_RELEASE, "a command migrated on its own"
    finally:
        db.dispose()
    with pytest.raises(SchemaMismatch) as refused:
        Instance.open(home).close()
    assert refused.value.code == "database_behind_code" and refused.value.status == 503

    code, out = fg(home, "backup", "--out", str(home.parent / "before-upgrade"))  # the step before an upgrade
    assert code == 0 and "Backed up" in out, out

    code, out = fg(home, "db", "upgrade")
    assert code == 0, out
    assert f"Upgraded the database from revision {OLD_RELEASE} to {head}" in out
    code, out = fg(home, "db", "check", "--json")
    assert code == 0, out
    assert re.search(rf'"database_revision": "{head}".*"state": "current"', out), out
    assert fg(home, "db", "upgrade") == (0, f"The database is already at revision {head}: nothing to do.")

    code, out = fg(home, "order", "list")
    assert code == 0 and "po-old" in out, out
    inst = Instance.open(home)
    try:
        order = orders.get_order(inst, "po-old")
        assert (order.quota, order.used, order.product_id, order.site_id) == (500, 7, "sensor", "cm-a")
        erin = tokens.authenticate_token(inst, secret)  # the older release's token still works
        assert (erin.name, erin.role.value, erin.person_name) == ("erin", "admin", "erin")  # its person made on the way
        assert inst.cas.issuer("issuing").certificate.subject  # the CAs init made are registered
    finally:
        inst.close()


def test_a_database_a_newer_release_upgraded_is_refused_and_never_downgraded(
    old_home: tuple[Path, str | None, str],
) -> None:
    home, database_url, _ = old_home
    db = _database(home, database_url)
    try:
        upgrade(db)
        with db.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        db.dispose()
    code, out = fg(home, "db", "check")
    assert code == 1 and "database: 9999" in out and "ahead" in out and "newer FabGuard" in out, out
    for command in (("order", "list"), ("db", "upgrade")):
        code, out = fg(home, *command)
        assert code == 3 and "[database_ahead_of_code]" in out and "Traceback" not in out, (command, out)


def test_a_new_instance_is_at_the_code_revision_and_opening_it_writes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert fg(home, "init", "--org", "Acme")[0] == 0
    assert fg(home, "db", "check") == (
        0,
        f"database: {code_revision()}; code: {code_revision()}: current (nothing to do)",
    )


def test_serve_migrate_upgrades_first_then_serves_ready(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init_instance(home, organization="Acme Devices")
    _as_an_older_release(home, None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "fabguard.cli.main", "--home", str(home), "serve", "--port", str(port), "--migrate"],
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        verify = ssl.create_default_context(cafile=str(home / "ca" / "root.pem"))
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log.read_text()
            try:
                ready = httpx.get(f"https://127.0.0.1:{port}/readyz", verify=verify, timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert ready.status_code == 200 and ready.json()["status"] == "ready", ready.text
    assert fg(home, "db", "check")[0] == 0


def test_the_demo_upgrades_an_instance_an_earlier_demo_made_and_no_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`./scripts/demo` after pulling a newer FabGuard: the demo's own instance (its generated passphrase file
    beside it) is brought to the code's revision with its data; an instance of anyone else is refused."""
    from fabguard.cli.demo import DEMO_PASSPHRASE_FILE, _open_demo_instance
    from fabguard.pki.keys import PASSPHRASE_ENV, PASSPHRASE_FILE_ENV

    for name in (PASSPHRASE_ENV, PASSPHRASE_FILE_ENV):
        monkeypatch.delenv(name, raising=False)
    demo_home = tmp_path / "demo"
    _open_demo_instance(demo_home).close()
    assert (demo_home / DEMO_PASSPHRASE_FILE).exists()
    _as_an_older_release(demo_home, None)
    inst = _open_demo_instance(demo_home)
    try:
        assert orders.get_order(inst, "po-old").used == 7  # the older release's data, kept
    finally:
        inst.close()
    db = _database(demo_home, None)
    try:
        assert database_revision(db) == code_revision()
    finally:
        db.dispose()

    other = tmp_path / "other"
    monkeypatch.setenv(PASSPHRASE_ENV, "an operator's own passphrase")
    init_instance(other, organization="Acme Devices")
    _as_an_older_release(other, None)
    with pytest.raises(SchemaMismatch) as refused:
        _open_demo_instance(other)
    assert refused.value.code == "database_behind_code"
    db = _database(other, None)
    try:
        assert database_revision(db) == OLD_RELEASE  # nothing migrated
    finally:
        db.dispose()
