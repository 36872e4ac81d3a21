"""The command tree as a whole: every group and command explains itself, and every error is one line, not a traceback."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from fabguard.cli.common import command
from fabguard.cli.main import app
from fabguard.domain.errors import InvalidRequest, Unavailable
from fabguard.fixture.client import FabGuardClientError
from fabguard.fixture.firmware import PackageMalformed

runner = CliRunner()
ROOT: Any = typer.main.get_command(app)
# Commands that do their work even where no instance is: they would make one (and, for the demo, run a line).
# ``ceremony new-root`` makes a ceremony's root directory, on a machine that has no instance at all.
MAKES_AN_INSTANCE = {("init",), ("demo",), ("agent", "prepare"), ("ceremony", "new-root")}


def _walk(cmd: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _walk(sub, (*path, name))


GROUPS = [(path, cmd) for path, cmd in _walk(ROOT) if hasattr(cmd, "commands") and path]
COMMANDS = [(path, cmd) for path, cmd in _walk(ROOT) if not hasattr(cmd, "commands")]
ON_AN_INSTANCE = [(path, cmd) for path, cmd in COMMANDS if path not in MAKES_AN_INSTANCE]


def _ids(items: list[tuple[tuple[str, ...], Any]]) -> list[str]:
    return [" ".join(path) for path, _ in items]


def _placeholders(cmd: Any) -> list[str]:
    """Arguments that satisfy a command's required parameters (none of them names anything that exists)."""
    args: list[str] = []
    for param in cmd.params:
        if not param.required:
            continue
        kind = param.type_descriptor.annotation
        value = next(iter(kind)).value if isinstance(kind, type) and issubclass(kind, enum.Enum) else "1"
        args += [value] if param.param_type_name == "argument" else [param.opts[0], value]
    return args


def test_the_tree_has_every_group_and_top_level_command() -> None:
    assert {" ".join(p) for p, _ in GROUPS} == {
        "token",
        "product",
        "site",
        "order",
        "fixture",
        "unit",
        "ca",
        "ledger",
        "audit",
        "firmware",
        "stats",
        "approval",
        "handoff",
        "witness",
        "royalty",
        "royalty rate",
        "licence",
        "compliance",
        "field",
        "lease",
        "agent",
        "config",
        "person",
        "db",
        "ceremony",
    }
    top = {("init",), ("serve",), ("events",), ("demo",), ("backup",), ("restore",), ("doctor",)}
    assert top <= {p for p, _ in COMMANDS}


@pytest.mark.parametrize(("path", "group"), GROUPS, ids=_ids(GROUPS))
def test_every_group_help_says_what_it_is_for_and_lists_its_commands(path: tuple[str, ...], group: Any) -> None:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert group.help and " ".join(group.help.split()) in out
    for name, sub in group.commands.items():
        assert name in out
        assert sub.help, f"fabguard {' '.join(path)} {name} has no help text"
    bare = runner.invoke(app, list(path), env={"COLUMNS": "200"})
    assert "Usage:" in bare.output and "Traceback" not in bare.output  # no arguments: the help, not an error


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=_ids(COMMANDS))
def test_every_command_help_describes_it_and_each_parameter(path: tuple[str, ...], cmd: Any) -> None:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert cmd.help and cmd.help.split()[0] in result.output
    for param in cmd.params:
        assert getattr(param, "help", None), f"fabguard {' '.join(path)}: {param.name} has no help text"


@pytest.mark.parametrize(("path", "cmd"), ON_AN_INSTANCE, ids=_ids(ON_AN_INSTANCE))
def test_every_command_explains_a_failure_in_one_line_with_exit_code_2_or_3(
    path: tuple[str, ...], cmd: Any, tmp_path: Path
) -> None:
    """Where there is no instance (and no file, server or record its arguments name), each command fails
    with one error line, never a traceback."""
    args = ["--home", str(tmp_path / "nowhere"), *path, *_placeholders(cmd)]
    result = runner.invoke(app, args, input="y\n", env={"COLUMNS": "200"}, catch_exceptions=False)
    lines = [line for line in result.output.splitlines() if line.strip()]
    if path == ("stats", "rebuild"):
        lines = lines[1:]  # its confirmation prompt
    assert result.exit_code in (2, 3), (args, result.output)  # a usage error, or refused with its code
    assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.output)
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("error", "expected", "exit_code"),
    [
        (InvalidRequest("no order 'po-9'", code="order_not_found"), "error: no order 'po-9' [order_not_found]", 3),
        (FabGuardClientError(403, "wrong_site", "the fixture is not at cm-a"), "error: the server refused: ", 3),
        (PackageMalformed("truncated"), "error: truncated [package_malformed]", 3),  # any error of the fixture SDK
        (FileNotFoundError(2, "No such file or directory", "ca.pem"), "error: [Errno 2] No such file or directory", 2),
        (InvalidRequest("run it on the server", code="needs_instance"), "error: run it on the server", 2),
        (Unavailable("the database does not answer"), "error: the database does not answer", 4),
    ],
)
def test_a_registered_command_shows_our_errors_as_one_line(error: Exception, expected: str, exit_code: int) -> None:
    def go() -> None:
        raise error

    group = typer.Typer()
    command(group, "go")(go)
    command(group, "other")(lambda: None)
    result = runner.invoke(group, ["go"], env={"COLUMNS": "200"}, catch_exceptions=False)
    assert result.exit_code == exit_code
    assert result.output.startswith(expected) and len(result.output.strip().splitlines()) == 1, result.output


def test_a_registered_command_lets_a_bug_show_its_traceback() -> None:
    def go() -> None:
        raise KeyError("a bug, not a refusal")

    group = typer.Typer()
    command(group, "go")(go)
    command(group, "other")(lambda: None)
    with pytest.raises(KeyError):
        runner.invoke(group, ["go"], catch_exceptions=False)


def test_serve_with_an_unknown_log_level_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--home", str(tmp_path), "serve", "--log-level", "loud"])
    assert result.exit_code == 3  # refused with its code
    assert result.output.strip().count("\n") == 0 and "unknown log level 'loud'" in result.output
    assert "Traceback" not in result.output


def _names_a_command(words: list[str]) -> bool:
    """Whether ``fabguard WORDS...`` starts with a command of the tree (words after a command are its arguments)."""
    cmd: Any = ROOT
    for word in words:
        if not hasattr(cmd, "commands"):
            return True
        if word not in cmd.commands:
            return False
        cmd = cmd.commands[word]
    return True


def test_every_fabguard_command_a_help_text_or_a_page_names_exists() -> None:
    """A help text or a documentation page that tells the user to run ``fabguard X Y`` names a real command
    (``fabguard approvals approve`` was named where the command is ``fabguard approval approve``)."""
    repo = Path(__file__).resolve().parents[2]
    texts = [
        (
            f"fabguard {' '.join(path)} --help",
            " ".join([cmd.help or "", *(getattr(p, "help", "") or "" for p in cmd.params)]),
        )
        for path, cmd in _walk(ROOT)
    ]
    texts += [
        (str(page.relative_to(repo)), page.read_text()) for page in [repo / "README.md", *(repo / "docs").rglob("*.md")]
    ]
    wrong = [
        f"{where}: {m.group(0)}"
        for where, text in texts
        for m in re.finditer(r"\bfabguard((?: [a-z][a-z0-9-]+){1,2})", text)
        if not _names_a_command(m.group(1).split())
    ]
    assert wrong == []
