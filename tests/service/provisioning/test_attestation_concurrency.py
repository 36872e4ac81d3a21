"""Attested provisioning under concurrency, on both engines: fixtures racing for the last units of an order
that requires attestation get exactly the quota, every issued unit records what backed it, and the same
attested unit sent from several threads at once gets one certificate."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select

from fabguard.domain.issuance import AttestationPolicy
from fabguard.domain.values import ProductId
from fabguard.fixture.client import FabGuardClientError, FixtureClient
from fabguard.service.catalog import orders
from fabguard.service.provisioning import attestation
from fabguard.store.models import Unit
from tests.support import World, tested_device
from tests.tpm_support import TestCa, pem

QUOTA, UNITS, THREADS = 4, 8, 4


def test_racing_attested_units_get_exactly_the_quota_and_each_keeps_its_attestation(any_world: World) -> None:
    vendor = TestCa.make("Test SE vendor root")
    attestation.add_root(any_world.inst, ProductId("sensor"), "se", vendor.pem, actor="test")
    attestation.set_policy(any_world.inst, ProductId("sensor"), AttestationPolicy.REQUIRED, actor="test")
    order = any_world.order(quota=QUOTA)
    clients = [any_world.fixture(f"fx-{i}") for i in range(THREADS)]
    jobs = []
    for i in range(UNITS):
        fx = clients[i % THREADS]
        serial = f"SN-C{i:02d}"
        device = tested_device(fx, serial, seed=i)
        chain = [pem(vendor.issue(serial, device.key.public_key())), vendor.pem]
        jobs.append((fx, serial, device.csr_pem(), {"format": "se-chain", "chain": chain}))
    same = jobs[0]

    def send(job: tuple[FixtureClient, str, str, dict[str, object]]) -> str:
        fx, serial, csr, evidence = job
        try:
            issued = fx.provision(order, serial, csr, attestation=evidence)
        except FabGuardClientError as refused:
            return refused.code
        return issued.certificate_pem

    with ThreadPoolExecutor(THREADS) as pool:
        answers = list(pool.map(send, [*jobs, same, same]))

    certificates = {a for a in answers if a.startswith("-----BEGIN")}
    assert len(certificates) == QUOTA
    assert Counter(a for a in answers[:UNITS] if a not in certificates) == {"quota_exhausted": UNITS - QUOTA}
    # The same attested unit three times at once: one certificate for all, or (quota gone) refused each time.
    assert answers[0] == answers[-1] == answers[-2]
    assert orders.get_order(any_world.inst, order).used == QUOTA
    with any_world.inst.db.read() as s:
        recorded = list(s.execute(select(Unit.attestation)).scalars())
    assert len(recorded) == QUOTA and all(r and '"format": "se-chain"' in r for r in recorded)
