"""No serial, MAC address or passcode is ever given twice, whatever the concurrency, on both engines.

Two instances open the same database (two engines, two connection pools: what two server processes
are), each with many threads; one pool serves fewer units than are asked for. Exactly the pool's units
are given, each once, the counters equal the rows, every refusal is ``identity_pool_exhausted``, and the
event log (the ledger) has one ``identity.allocated`` per unit and no gap.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select

from fabguard.api.parsing import unit_request
from fabguard.domain.errors import Refusal
from fabguard.domain.identities import SerialFormat
from fabguard.domain.identities.pools import pool_from_json
from fabguard.domain.values import OrderId, ProductId, Serial, SiteId
from fabguard.fixture.client import FabGuardClientError, FixtureClient
from fabguard.fixture.device import SimulatedDevice
from fabguard.fixture.openhtf_records import openhtf_record
from fabguard.runtime.group_commit import GroupCommitter
from fabguard.service.catalog import identity_pools, orders
from fabguard.service.core.instance import Instance
from fabguard.service.provisioning import testrecords
from fabguard.service.provisioning.allocation import Allocated, allocate_unit
from fabguard.service.provisioning.group import Job, run_jobs
from fabguard.service.provisioning.unit_requests import Provisioned
from fabguard.store.identity_models import AllocatedMac, IdentityPoolRow, UnitIdentityRow
from fabguard.store.models import Event, Order
from tests.served import ServerProcess
from tests.service.provisioning.test_identities import FIXTURE, PRODUCT, prepare
from tests.service.provisioning.test_quota_concurrency import (
    PRODUCT as QUOTA_PRODUCT,
)
from tests.service.provisioning.test_quota_concurrency import (
    assert_gap_free_events,
    enrol_fixtures,
    new_order,
    pg_instance,
    set_up_catalog,
)

__all__ = ["pg_instance"]  # the fixture of the quota tests: a PostgreSQL instance no test made before
assert QUOTA_PRODUCT == PRODUCT  # their catalogue is ours

THREADS = 16
UNITS = 40  # the pool's units
ASKS = 64  # more asks than units


@pytest.fixture
def two_instances(any_instance: Instance) -> Iterator[tuple[Instance, Instance]]:
    """The instance and a second one on the same database, as a second process opens it."""
    other = Instance.open(any_instance.home)
    try:
        yield any_instance, other
    finally:
        other.close()


def _in_threads(work: Callable[[int], object], count: int) -> list[object]:
    start = threading.Barrier(THREADS)

    def one(i: int) -> object:
        if i < THREADS:
            start.wait(30)  # every thread asks at once
        try:
            return work(i)
        except (Refusal, FabGuardClientError) as refusal:
            return refusal

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(one, range(count)))


def _given_once(inst: Instance) -> tuple[list[str], list[int], list[int]]:
    """The serials, addresses and passcodes in the database, asserted unique; the counters equal the rows."""
    with inst.db.read() as s:
        serials = list(s.execute(select(UnitIdentityRow.serial)).scalars())
        passcodes = [p for p in s.execute(select(UnitIdentityRow.passcode)).scalars() if p is not None]
        macs = list(s.execute(select(AllocatedMac.address)).scalars())
        mac_units = [u for u in s.execute(select(UnitIdentityRow.mac_unit)).scalars() if u is not None]
        pool = s.get(IdentityPoolRow, PRODUCT)
        events = s.execute(select(func.count()).where(Event.kind == "identity.allocated")).scalar_one()
    assert pool is not None
    assert len(set(serials)) == len(serials) and len(set(passcodes)) == len(passcodes)
    assert len(set(macs)) == len(macs) and sorted(mac_units) == list(range(pool.next_mac_unit))
    assert events == len(serials)
    assert_gap_free_events(inst)
    return serials, macs, passcodes


def test_concurrent_allocations_give_each_serial_address_and_passcode_once(
    two_instances: tuple[Instance, Instance],
) -> None:
    a, b = two_instances
    prepare(
        a,
        {
            "serials": {"prefix": "CC-", "width": 5, "required": True},
            "macs": {"prefix": "00-1B-63", "per_unit": 3, "count": 3 * UNITS + 2},
            "matter": {"vendor_id": 0xFFF1, "product_id": 0x8000, "iterations": 1000},
        },
        quota=ASKS,
    )
    # Two orders of the product: only the pool's row lock stands between their draws.
    outcomes = _in_threads(
        lambda i: allocate_unit(a if i % 2 else b, FIXTURE, OrderId("po-a" if i % 4 < 2 else "po-b"), None), ASKS
    )
    given = [o for o in outcomes if isinstance(o, Allocated)]
    refused = [o.code for o in outcomes if isinstance(o, Refusal)]
    assert len(given) == UNITS and refused == ["identity_pool_exhausted"] * (ASKS - UNITS)
    serials, macs, passcodes = _given_once(a)
    assert len(passcodes) == UNITS
    fmt = SerialFormat("CC-", 5)
    assert sorted(serials) == sorted(fmt.serial(n).value for n in range(UNITS))  # no gap, none twice
    assert sorted(g.identity.serial for g in given) == sorted(serials)
    assert len(macs) == 3 * UNITS
    with a.db.read() as s:
        pool = s.get(IdentityPoolRow, PRODUCT)
        assert pool is not None and (pool.next_serial, pool.next_mac_unit) == (UNITS, UNITS)


def test_units_drawing_at_provisioning_in_groups_and_alone_never_share_an_address(
    two_instances: tuple[Instance, Instance],
) -> None:
    a, b = two_instances
    prepare(a, {"macs": {"prefix": "70-B3-D5-1", "count": UNITS}, "matter": {"vendor_id": 0xFFF1, "product_id": 7}})
    orders.create_order(
        a, order_id=OrderId("po-c"), product_id=ProductId(PRODUCT), site_id=SiteId("cm-a"), quota=ASKS, actor="t"
    )
    serials = [f"U{i:04d}" for i in range(ASKS)]
    rng = random.Random(5)
    records = [openhtf_record(s, FIXTURE.id, fail=False, rng=rng) for s in serials]
    assert {r["status"] for r in testrecords.record_tests(a, FIXTURE, records)} == {"stored"}
    requests = [unit_request("po-c", s, SimulatedDevice(s).csr_pem(), max_csr_bytes=8192) for s in serials]
    committer = GroupCommitter(a).start()  # one process's writer groups its requests; the other decides alone
    try:
        outcomes = _in_threads(
            lambda i: (
                committer.run([Job(FIXTURE, requests[i])])[0] if i % 2 else run_jobs(b, [Job(FIXTURE, requests[i])])[0]
            ),
            ASKS,
        )
    finally:
        committer.stop()
    issued = [o for o in outcomes if isinstance(o, Provisioned)]
    refused = [o.code for o in outcomes if isinstance(o, Refusal)]
    assert len(issued) == UNITS and refused == ["identity_pool_exhausted"] * (ASKS - UNITS), outcomes
    _, macs, passcodes = _given_once(a)
    assert len(passcodes) == UNITS
    assert sorted(m for p in issued for m in p.identity.mac_addresses) == sorted(  # type: ignore[union-attr]
        f"{':'.join(f'{b:02X}' for b in m.to_bytes(6, 'big'))}" for m in macs
    )
    with a.db.read() as s:
        assert s.get(Order, "po-c").used == UNITS  # type: ignore[union-attr]


def test_a_station_serial_named_by_many_threads_at_once_is_allocated_once(
    two_instances: tuple[Instance, Instance],
) -> None:
    a, b = two_instances
    prepare(a, {"macs": {"prefix": "00-1B-63"}})
    outcomes = _in_threads(
        lambda i: allocate_unit(a if i % 2 else b, FIXTURE, OrderId("po-a"), Serial("SAME-1")), THREADS
    )
    done = [o for o in outcomes if isinstance(o, Allocated)]
    assert len(done) == THREADS, outcomes
    assert len({d.identity for d in done}) == 1 and sum(not d.replayed for d in done) == 1
    assert len(_given_once(a)[0]) == 1


@pytest.mark.postgres
@pytest.mark.slow
def test_two_server_processes_allocate_each_identity_once(
    pg_instance: Instance, server_processes: Callable[[Path], ServerProcess], tmp_path: Path
) -> None:
    """Real ``fabguard serve`` processes on one PostgreSQL database, fixtures over mTLS on both at once."""
    inst = pg_instance
    set_up_catalog(inst)
    identity_pools.set_pools(
        inst,
        ProductId(PRODUCT),
        pool_from_json(
            {
                "serials": {"prefix": "PX-", "width": 4, "required": True},
                "macs": {"prefix": "00-1B-63", "per_unit": 2, "count": 2 * UNITS},
                "matter": {"vendor_id": 0xFFF1, "product_id": 0x8000, "iterations": 1000},
            }
        ),
        actor="test",
    )
    order = new_order(inst, ASKS)
    servers = [server_processes(inst.home), server_processes(inst.home)]
    creds = enrol_fixtures(inst, servers[0].url, tmp_path / "fixtures", 8)
    clients = [FixtureClient(c, server=servers[i % 2].url) for i, c in enumerate(creds)]
    try:
        outcomes = _in_threads(lambda i: clients[i % len(clients)].allocate(order), ASKS)
    finally:
        for c in clients:
            c.close()
    given = [o for o in outcomes if isinstance(o, dict)]
    refused = [o.code for o in outcomes if isinstance(o, FabGuardClientError)]
    assert len(given) == UNITS and refused == ["identity_pool_exhausted"] * (ASKS - UNITS), outcomes
    serials, macs, passcodes = _given_once(inst)
    assert (
        sorted(g["serial"] for g in given)
        == sorted(serials)
        == sorted(SerialFormat("PX-", 4).serial(n).value for n in range(UNITS))
    )
    assert len(macs) == 2 * UNITS and len(passcodes) == UNITS
    assert sorted(g["matter"]["passcode"] for g in given) == sorted(passcodes)
