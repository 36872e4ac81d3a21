"""``fabguard backup`` and ``fabguard restore`` on real instance directories: the drill end to end from the
command line, and one-line errors for a backup or a target that is not right."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_cli import fg


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    code, out = fg(home, "init", "--org", "Acme Devices")
    assert code == 0, out
    assert fg(home, "product", "add", "sensor", "--name", "Sensor")[0] == 0
    return home


def test_backup_restore_and_audit_from_the_command_line(home: Path, tmp_path: Path) -> None:
    assert fg(home, "ledger", "key")[0] == 0
    code, key = fg(home, "ledger", "key")
    (tmp_path / "ledger.pub").write_text(key + "\n")
    assert fg(home, "ledger", "checkpoint", "--out", str(tmp_path / "seen.txt"))[0] == 0
    code, out = fg(home, "backup", "--out", str(tmp_path / "b"))
    assert code == 0 and "Backed up" in out and "sqlite" in out, out
    new = tmp_path / "restored"
    code, out = fg(home, "restore", str(tmp_path / "b"), "--home", str(new))
    assert code == 0 and "Restored" in out and "unknown here" in out, out
    code, out = fg(new, "product", "list")
    assert code == 0 and "sensor" in out
    assert fg(new, "ledger", "export", str(tmp_path / "export"))[0] == 0
    code, out = fg(
        new,
        "audit",
        "verify",
        str(tmp_path / "export"),
        "--key",
        str(tmp_path / "ledger.pub"),
        "--trusted-checkpoint",
        str(tmp_path / "seen.txt"),
    )
    assert code == 0 and "verified" in out and "1 of your checkpoints" in out, out


def test_backup_and_restore_errors_are_one_line(home: Path, tmp_path: Path) -> None:
    backup = tmp_path / "b"
    assert fg(home, "backup", "--out", str(backup))[0] == 0
    cases = [
        (["backup", "--out", str(backup)], "[backup_target_exists]"),
        (["restore", str(backup), "--home", str(home)], "[restore_target_exists]"),
        (["restore", str(tmp_path / "nothing"), "--home", str(tmp_path / "n")], "[backup_invalid]"),
        (
            ["restore", str(backup), "--home", str(tmp_path / "n"), "--database-url", "postgresql+psycopg://u@h/d"],
            "[backup_engine_mismatch]",
        ),
    ]
    for args, code_text in cases:
        code, out = fg(home, *args)
        assert code in (2, 3) and code_text in out and "Traceback" not in out, (args, out)
    (backup / "home" / "instance.json").write_text("{}")
    code, out = fg(home, "restore", str(backup), "--home", str(tmp_path / "n"))
    assert code == 3 and "[backup_tampered]" in out and "home/instance.json" in out
    assert not (tmp_path / "n").exists()


def test_backup_without_an_instance_says_how_to_make_one(tmp_path: Path) -> None:
    code, out = fg(tmp_path / "nowhere", "backup", "--out", str(tmp_path / "b"))
    assert code == 3 and "fabguard init" in out and not (tmp_path / "b").exists()
