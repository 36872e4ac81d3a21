"""``fabguard audit verify`` and ``verify-report`` with a verifier key that is not one: the auditor's input
error (one line, exit code 2), never a traceback and never "verification FAILED" (exit code 1)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fabguard.cli.main import app

runner = CliRunner()

NOT_A_KEY = "fabguard-ledger+zz+not base64"


def _run(*args: str | Path) -> tuple[int, list[str]]:
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"}, catch_exceptions=False)
    return result.exit_code, [line for line in result.output.splitlines() if line.strip()]


@pytest.fixture(params=["verify", "verify-report"])
def audit(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    """The command, and what it checks (a directory or a report that does not exist: the key is read first)."""
    return request.param, tmp_path / ("export" if request.param == "verify" else "report.json")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (NOT_A_KEY.encode(), "is not a ledger verifier key: malformed verifier key"),
        (b"fabguard-ledger+00+AQ==", "only Ed25519 verifier keys are supported"),
        (b"\xff\xfe not text", "cannot read the verifier key"),
    ],
)
def test_a_malformed_verifier_key_is_one_error_line_with_exit_code_2(
    audit: tuple[str, Path], tmp_path: Path, content: bytes, expected: str
) -> None:
    key = tmp_path / "key.pub"
    key.write_bytes(content)
    code, lines = _run("audit", audit[0], audit[1], "--key", key)
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines


def test_a_missing_verifier_key_is_one_error_line_with_exit_code_2(audit: tuple[str, Path], tmp_path: Path) -> None:
    code, lines = _run("audit", audit[0], audit[1], "--key", tmp_path / "nowhere.pub")
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: cannot read the verifier key"), lines


def test_a_malformed_verifier_key_names_its_code(tmp_path: Path) -> None:
    (tmp_path / "key.pub").write_text(NOT_A_KEY)
    _, lines = _run("audit", "verify", tmp_path, "--key", tmp_path / "key.pub")
    assert lines[0].endswith("[checkpoint_invalid]"), lines
