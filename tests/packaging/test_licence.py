"""The licence travels with the code: LICENSE is the Apache License 2.0 that pyproject names, and both wheels
(fabguard and fabguard-station) carry it in their dist-info, named in their metadata."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LICENCE = ROOT / "LICENSE"


def test_the_licence_file_is_the_apache_license_2_0() -> None:
    text = LICENCE.read_text(encoding="utf-8")
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text  # the whole text, not a pointer to it
    for pyproject in (ROOT / "pyproject.toml", ROOT / "station" / "pyproject.toml"):
        assert 'license = "Apache-2.0"' in pyproject.read_text(encoding="utf-8")


def test_the_changelog_keeps_an_unreleased_section() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "keepachangelog.com" in text
    assert "\n## [Unreleased]\n" in text


@pytest.mark.slow
def test_both_wheels_carry_the_licence_in_their_dist_info(tmp_path: Path) -> None:
    tree = tmp_path / "repo"  # a copy, so the build leaves nothing in the checkout
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", ".mypy_cache")
    for part in ("src", "station"):
        shutil.copytree(ROOT / part, tree / part, ignore=ignore, symlinks=True)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, tree / name)
    wheels = tmp_path / "wheels"
    # With build isolation: the backend comes from the package index (setuptools >= 77 reads the SPDX
    # licence and license-files, PEP 639); the development environment's setuptools may be older.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(tree), str(tree / "station")],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    if built.returncode != 0 and "network" in built.stderr.lower():
        pytest.skip(f"the build backend cannot be fetched: {built.stderr[-300:]}")
    assert built.returncode == 0, built.stderr

    licence = LICENCE.read_bytes()
    for pattern in ("fabguard-*.whl", "fabguard_station-*.whl"):
        wheel = next(wheels.glob(pattern))
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
            inside = [n for n in names if n.split("/")[0].endswith(".dist-info") and n.endswith("/LICENSE")]
            assert inside, f"{wheel.name} has no LICENSE in its dist-info: {[n for n in names if '.dist-info/' in n]}"
            assert archive.read(inside[0]) == licence
            metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        assert "License-Expression: Apache-2.0" in metadata
        assert "License-File: LICENSE" in metadata
