"""MkDocs hooks (mkdocs.yml ``hooks:``): the reference pages generated from the code, and a nav that keeps up
with new files.

- ``on_config``: every decision record in ``docs/adr/`` is listed under "Decisions (ADRs)", whatever its
  number, and any other page under ``docs/`` that the nav does not name is added under "More pages", so a
  page another change adds is reachable before someone places it in the nav (the build logs each one).
- ``on_files``: the pages of ``scripts/gen_docs.py`` (CLI, HTTP API, error codes, configuration, ADR index,
  changelog, licence) are added to the build, made from the code of this checkout; nothing generated is
  committed.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gen_docs
from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.hooks.fabguard")
ADR_SECTION = "Decisions (ADRs)"
MORE_SECTION = "More pages"


def _named(nav: Any) -> set[str]:
    if isinstance(nav, str):
        return {nav}
    if isinstance(nav, list):
        return set().union(*(_named(item) for item in nav)) if nav else set()
    if isinstance(nav, dict):
        return set().union(*(_named(v) for v in nav.values())) if nav else set()
    return set()


def _section(nav: list[Any], title: str) -> list[Any] | None:
    for item in nav:
        if isinstance(item, dict):
            for key, value in item.items():
                if key == title and isinstance(value, list):
                    return value
                if isinstance(value, list):
                    found = _section(value, title)
                    if found is not None:
                        return found
    return None


def on_config(config: Any) -> Any:
    nav = config["nav"]
    if not nav:
        return config
    docs = Path(config["docs_dir"])
    adrs = _section(nav, ADR_SECTION)
    if adrs is not None:
        named = _named(nav)
        for path in sorted((docs / "adr").glob("[0-9]*.md")):
            uri = f"adr/{path.name}"
            if uri not in named:
                adrs.append(uri)
    named = _named(nav)
    extra = [
        p.relative_to(docs).as_posix()
        for p in sorted(docs.rglob("*.md"))
        if p.relative_to(docs).as_posix() not in named
    ]
    if extra:
        log.info("pages not in mkdocs.yml's nav, listed under '%s': %s", MORE_SECTION, ", ".join(extra))
        nav.append({MORE_SECTION: extra})
    return config


def on_files(files: Files, config: Any) -> Files:
    for uri, text in gen_docs.pages(Path(config["docs_dir"])).items():
        existing = files.get_file_from_path(uri)
        if existing is not None:
            files.remove(existing)
        files.append(File.generated(config, uri, content=text))
    return files
