"""The documentation site (mkdocs.yml, docs/): the reference pages generated from the code name everything the code
has, the site builds with --strict (and fails on a broken link), a page or ADR that the nav does not name is still
built and listed, and the README stays a quick start that keeps its two commands and links only to files that exist."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import typer

from fabguard.cli.main import app
from fabguard.domain.errors import ERROR_STATUS, FIRMWARE_REFUSAL_STATUS, REFUSAL_STATUS
from fabguard.service.core.settings import Limits

ROOT = Path(__file__).resolve().parents[2]


def gen_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def command_paths() -> set[str]:
    """Every command of the CLI, from Typer's own registry (not the click tree the generator walks)."""
    paths = set()

    def visit(t: typer.Typer, prefix: str) -> None:
        for c in t.registered_commands:
            if not c.hidden:
                paths.add(f"{prefix} {c.name or (c.callback.__name__ if c.callback else '')}".strip())
        for g in t.registered_groups:
            assert g.typer_instance is not None
            name = g.name or g.typer_instance.info.name
            paths.add(f"{prefix} {name}")
            visit(g.typer_instance, f"{prefix} {name}")

    visit(app, "fabguard")
    return paths


def test_the_cli_reference_has_every_command_and_its_options() -> None:
    page = gen_docs().cli_reference()
    headings = set(re.findall(r"^#+ `(fabguard[^`]*)`$", page, re.MULTILINE))
    assert command_paths() <= headings, sorted(command_paths() - headings)
    create = page[page.index("`fabguard order create`\n") :]
    create = create[: create.index("\n#")]
    for option in ("--id", "--product", "--site", "--quota", "--valid-until"):
        assert f"`{option}`" in create


def test_the_error_reference_has_every_declared_code_with_its_status() -> None:
    page = gen_docs().error_reference()
    rows = dict(re.findall(r"^\| `([a-zA-Z_]+)` \| (\d{3}) \|", page, re.MULTILINE))
    for table in (REFUSAL_STATUS, FIRMWARE_REFUSAL_STATUS, ERROR_STATUS):
        for code, status in table.items():
            assert rows.get(code) == str(status), code


def test_the_configuration_reference_has_every_limit_with_its_default() -> None:
    page = gen_docs().config_reference()
    for name, value in Limits().to_dict().items():
        assert f"| `{name}` | `{value}` |" in page
    for variable in ("FABGUARD_HOME", "FABGUARD_DATABASE_URL", "FABGUARD_KEY_PASSPHRASE_FILE", "FABGUARD_TOKEN"):
        assert f"`{variable}`" in page


def test_the_http_reference_has_every_route_of_the_openapi_document() -> None:
    docs = gen_docs()
    spec = docs.openapi_spec()
    page = docs.openapi_page(spec)
    for path, methods in spec["paths"].items():
        for method in methods:
            if method in ("get", "post", "put", "patch", "delete"):
                assert f"### `{method.upper()} {path}`" in page


def test_the_readme_is_a_quick_start_that_keeps_its_two_commands() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert lines[:6] == [
        "# FabGuard",
        "",
        lines[2],
        "",
        "    ./scripts/demo",
        "",
    ] and lines[2].startswith("**Run the demo**")
    assert lines[6].startswith("**Run the tests**") and lines[8] == "    ./scripts/test"
    assert len(lines) <= 80
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", "\n".join(lines)):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target


def site_copy(tmp_path: Path) -> Path:
    """The documentation's sources in a directory of their own (the code linked, not copied)."""
    tree = tmp_path / "repo"
    tree.mkdir()
    shutil.copytree(ROOT / "docs", tree / "docs")
    shutil.copytree(ROOT / "scripts", tree / "scripts")
    for name in ("mkdocs.yml", "CHANGELOG.md", "LICENSE"):
        shutil.copy(ROOT / name, tree / name)
    (tree / "src").symlink_to(ROOT / "src")
    return tree


def build(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tree / "site")],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"PATH": "/usr/bin:/bin", "NO_MKDOCS_2_WARNING": "1", "HOME": str(tree)},
    )


@pytest.mark.slow
def test_the_site_builds_strictly_lists_pages_the_nav_does_not_name_and_fails_on_a_broken_link(
    tmp_path: Path,
) -> None:
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    tree = site_copy(tmp_path)
    (tree / "docs" / "ceremony.md").write_text("# Key ceremony\n\nSee the [tutorial](tutorial.md).\n")
    (tree / "docs" / "adr" / "0099-a-new-decision.md").write_text("# 99. A new decision\n\nDecided.\n")
    built = build(tree)
    assert built.returncode == 0, built.stderr[-3000:]
    site = tree / "site"
    for page in (
        "index.html",
        "tutorial.html",
        "reference/cli.html",
        "reference/errors.html",
        "reference/http-api.html",
        "reference/configuration.html",
        "reference/openapi.json",
        "adr/index.html",
        "ceremony.html",
        "adr/0099-a-new-decision.html",
    ):
        assert (site / page).is_file(), page
    home = (site / "index.html").read_text(encoding="utf-8")
    assert "ceremony.html" in home and "adr/0099-a-new-decision.html" in home  # in the nav
    assert "0099-a-new-decision.html" in (site / "adr" / "index.html").read_text(encoding="utf-8")

    (tree / "docs" / "ceremony.md").write_text("# Key ceremony\n\nSee [nothing](no-such-page.md).\n")
    broken = build(tree)
    assert broken.returncode != 0
    assert "no-such-page.md" in broken.stderr
