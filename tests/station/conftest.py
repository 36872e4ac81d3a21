"""Running ``fabguard-station`` as a test step does: a separate process, its exit code and its output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fabguard.domain.values import FixtureId, SiteId
from fabguard.service.catalog import fixtures
from tests.support import World

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "testformats"


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.stdout)
        return body


@dataclass
class Station:
    """A line PC: ``fabguard-station`` on its PATH (a wrapper around this checkout), a credentials directory."""

    bin: Path
    dir: Path
    env: dict[str, str]

    def run(self, *args: object, env: dict[str, str] | None = None, timeout: float = 60) -> Ran:
        result = subprocess.run(
            ["fabguard-station", *(str(a) for a in args)],
            env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL,  # no terminal: nothing may prompt
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Ran(result.returncode, result.stdout, result.stderr)

    def enroll(self, world: World, fixture_id: str, site: str = "cm-a") -> Ran:
        _, token = fixtures.create_fixture(
            world.inst, fixture_id=FixtureId(fixture_id), site_id=SiteId(site), actor="test"
        )
        return self.run(
            "enroll", "--server", world.url, "--ca", world.root_ca, "--json", env={"FABGUARD_ENROLLMENT_TOKEN": token}
        )


@pytest.fixture
def station(tmp_path: Path) -> Station:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "fabguard-station"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m fabguard_station "$@"\n')
    wrapper.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FABGUARD_")}
    env.update(
        {
            "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONPATH": str(ROOT / "src"),
            "FABGUARD_STATION_DIR": str(tmp_path / "station"),
        }
    )
    return Station(bin_dir, tmp_path / "station", env)
