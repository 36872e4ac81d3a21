"""Per-fixture request rate: over the burst a fixture gets 429 rate_limited, recorded; other fixtures go on."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabguard.fixture.errors import FixtureError
from fabguard.service.core import events
from fabguard.service.core.instance import Instance
from tests.support import World, new_instance

BURST = 5
RATE = 2


@pytest.fixture
def limited_world(tmp_path: Path, database_url: str | None) -> Iterator[World]:
    inst: Instance = new_instance(tmp_path / "home", database_url)
    inst.limits = dataclasses.replace(inst.limits, fixture_requests_per_second=RATE, fixture_request_burst=BURST)
    world = World.start(inst, tmp_path)
    try:
        yield world
    finally:
        world.stop()
        inst.close()


def test_a_fixture_over_its_rate_is_refused_with_rate_limited_and_others_are_not(limited_world: World) -> None:
    fx1, fx2 = limited_world.fixture("fx-1"), limited_world.fixture("fx-2")
    for _ in range(BURST):
        assert fx1.whoami()["fixture_id"] == "fx-1"
    with pytest.raises(FixtureError) as refused:
        fx1.whoami()
    assert refused.value.code == "rate_limited"
    with pytest.raises(FixtureError):
        fx1.whoami()  # still empty
    assert fx2.whoami()["fixture_id"] == "fx-2"  # its own bucket
    recorded = [
        e for e in events.list_events(limited_world.inst, kind="request.refused") if e["code"] == "rate_limited"
    ]
    assert len(recorded) == 1 and recorded[0]["fixture_id"] == "fx-1"  # once a second at most
    time.sleep(1.0 / RATE + 0.1)
    assert fx1.whoami()["fixture_id"] == "fx-1"  # refilled
