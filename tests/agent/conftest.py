"""The central server and a site agent made from its lease, on loopback."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from fabguard.api.server import ServerThread
from fabguard.domain.values import OrderId
from fabguard.fixture.client import Credentials, FixtureClient
from fabguard.service.agent import quota_leases
from fabguard.service.agent.agent_request import parse_agent_request
from fabguard.service.agent.lease_acts import LeaseIssue
from fabguard.service.agent.site_agent import init_agent, prepare_agent
from fabguard.service.approvals import requests
from fabguard.service.core.instance import Instance
from tests.support import REQUESTER, World, second_person_approves


@dataclasses.dataclass
class Site:
    world: World
    order_id: str
    lease: dict[str, object]
    home: Path


def approved_lease(
    inst: Instance, order_id: str, request_text: str, *, units: int, expires_in: timedelta = timedelta(hours=8)
) -> dict[str, object]:
    """A lease asked for by one person and approved by a second (it certifies the agent's CA under the
    root: dual control), then its bundle, as the agent gets it."""
    pending = requests.request(
        inst, OrderId(order_id).value, LeaseIssue.of(units, expires_in, parse_agent_request(request_text)), by=REQUESTER
    )
    done = second_person_approves(inst, pending)
    return quota_leases.lease_bundle(inst, str(done["lease_id"]))


def lease_for(world: World, order_id: str, home: Path, units: int = 3, site: str = "cm-a") -> dict[str, object]:
    return approved_lease(world.inst, order_id, prepare_agent(home, site_id=site), units=units)


def make_site(world: World, home: Path) -> Site:
    """A lease of 3 units of a 10-unit order, with fixture line-1 enrolled before it (so the lease carries
    it), and the agent made from it in ``home`` (the agent keeps its own SQLite file)."""
    world.credentials("line-1")
    order_id = world.order(10)
    bundle = lease_for(world, order_id, home)
    init_agent(home, json.dumps(bundle))
    return Site(world, order_id, bundle, home)


@pytest.fixture
def site(world: World, tmp_path: Path) -> Site:
    return make_site(world, tmp_path / "agent")


@pytest.fixture
def any_site(any_world: World, tmp_path: Path) -> Site:
    """:func:`make_site` with the central server on each engine in turn."""
    return make_site(any_world, tmp_path / "agent")


def serve(site: Site) -> Iterator[tuple[Instance, ServerThread]]:
    inst = Instance.open(site.home)
    server = ServerThread(inst).start()
    yield inst, server
    server.stop()
    inst.close()


@pytest.fixture
def agent(site: Site) -> Iterator[tuple[Instance, ServerThread]]:
    yield from serve(site)


@pytest.fixture
def any_agent(any_site: Site) -> Iterator[tuple[Instance, ServerThread]]:
    yield from serve(any_site)


def agent_fixture(site: Site, server: ServerThread) -> FixtureClient:
    creds = Credentials.load(site.world.tmp / "fixtures" / "line-1")
    return FixtureClient(dataclasses.replace(creds, server=server.url))
