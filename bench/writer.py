"""The writer alone: CPU per unit of ``run_jobs`` (decide, sign, write, commit), no HTTP, no event loop.

    .venv/bin/python bench/writer.py [--units N] [--group G] [--keyed] [--repeat R] [--profile FILE]

A temporary SQLite instance gets one product, one site, one order of enough quota and a passing test record
for every serial; the device CSRs are made and checked (as the API's parsing does) before any clock starts.
The timed part hands the writer groups of G units (``service.provisioning.group.run_jobs``), each unit with
an idempotency key when --keyed (as the bench's fixtures send), and reads this process's CPU time: the
figure is units per CPU second of the writer, the part of the server's work that no other thread can share.
Each run uses fresh serials; the median of R runs is shown. --profile writes cProfile's statistics of the
last run to FILE (``python -m pstats FILE``).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fabguard.api.parsing import unit_request
from fabguard.domain.idempotency import IdempotencyKey
from fabguard.domain.issuance import FixtureFacts
from fabguard.domain.values import FixtureId, OrderId, ProductId, SiteId
from fabguard.fixture.device import SimulatedDevice
from fabguard.fixture.openhtf_records import openhtf_record
from fabguard.pki.keys import PASSPHRASE_ENV
from fabguard.service.catalog import fixtures, orders, product_catalog
from fabguard.service.core.idempotency import Keyed
from fabguard.service.core.instance import Instance
from fabguard.service.core.seeding import init_instance
from fabguard.service.provisioning import testrecords
from fabguard.service.provisioning.group import Job, run_jobs
from fabguard.service.provisioning.unit_requests import Provisioned

PRODUCT, SITE, ORDER = "sensor", "cm-a", "po-bench"
FIXTURE = FixtureFacts("fx-bench", SITE, False)
MAX_CSR = 8192


def _instance(home: Path, serials: list[str]) -> Instance:
    init_instance(home, organization="Acme Devices", database_url=None)
    inst = Instance.open(home)
    product_catalog.create_product(inst, product_id=ProductId(PRODUCT), name="Sensor", actor="bench")
    product_catalog.create_site(inst, site_id=SiteId(SITE), name="CM A", actor="bench")
    fixtures.create_fixture(inst, fixture_id=FixtureId(FIXTURE.id), site_id=SiteId(SITE), actor="bench")
    orders.create_order(
        inst,
        order_id=OrderId(ORDER),
        product_id=ProductId(PRODUCT),
        site_id=SiteId(SITE),
        quota=len(serials),
        actor="b",
    )
    rng = random.Random(7)
    for at in range(0, len(serials), 200):
        testrecords.record_tests(
            inst, FIXTURE, [openhtf_record(s, FIXTURE.id, fail=False, rng=rng) for s in serials[at : at + 200]]
        )
    return inst


def _jobs(serials: list[str], keyed: bool) -> list[Job]:
    jobs = []
    for serial in serials:
        request = unit_request(ORDER, serial, SimulatedDevice(serial).csr_pem(), max_csr_bytes=MAX_CSR)
        body = {"order_id": ORDER, "serial": serial}
        key = Keyed.of(FIXTURE.id, IdempotencyKey.parse(f"k-{serial}"), "POST /api/v1/units/provision", body)
        jobs.append(Job(FIXTURE, request, key if keyed else None))
    return jobs


def _run(inst: Instance, jobs: list[Job], group: int, profile: Path | None) -> float:
    profiler = cProfile.Profile() if profile is not None else None
    cpu0 = time.process_time()
    if profiler is not None:
        profiler.enable()
    for at in range(0, len(jobs), group):
        outcomes = run_jobs(inst, jobs[at : at + group])
        bad = [o for o in outcomes if isinstance(o, BaseException)]
        if bad:
            raise bad[0]
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)  # type: ignore[arg-type]
    return time.process_time() - cpu0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--units", type=int, default=1000, help="units per run (default 1000)")
    p.add_argument("--group", type=int, default=16, help="units per run_jobs call (default 16)")
    p.add_argument("--keyed", action="store_true", help="each unit under an idempotency key")
    p.add_argument("--repeat", type=int, default=3, help="runs; the median is shown (default 3)")
    p.add_argument("--profile", type=Path, default=None, help="cProfile the last run into this file")
    args = p.parse_args()
    os.environ[PASSPHRASE_ENV] = "bench-passphrase-0123456789"
    serials = [f"SN{i:07d}" for i in range(args.units * args.repeat)]
    with tempfile.TemporaryDirectory(prefix="fabguard-writer-") as tmp:
        inst = _instance(Path(tmp) / "home", serials)
        runs = [_jobs(serials[r * args.units : (r + 1) * args.units], args.keyed) for r in range(args.repeat)]
        rates = []
        for r, jobs in enumerate(runs):
            last = r == len(runs) - 1
            seconds = _run(inst, jobs, args.group, args.profile if last else None)
            rates.append(len(jobs) / seconds)
            print(f"run {r + 1}: {len(jobs)} units in {seconds:.2f} CPU s: {len(jobs) / seconds:,.0f} units per CPU s")
        sample = run_jobs(inst, [Job(FIXTURE, runs[0][0].request)])[0]
        assert isinstance(sample, Provisioned) and sample.replayed  # an issued unit replays: the runs were real
    print(
        f"writer, group {args.group}, {'keyed' if args.keyed else 'no keys'}: median {statistics.median(rates):,.0f} "
        f"units per CPU s (load {os.getloadavg()[0]:.1f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
