"""What key attestation costs per unit: SQL statements and time in the provisioning service, by policy.

    .venv/bin/python bench/attestation.py [--units N]

One temporary SQLite instance, in process (no HTTP, so the figures are the service's own): N units are
provisioned under a product whose policy is ``off``, then N under ``required`` with a secure-element chain
(a vendor root and signer made here), counting the SQL statements each unit's transaction sends. Then the
pure verification alone, per unit: the SE chain, and a TPM2_Certify made by swtpm when it is installed.
Device keys, CSRs, chains and test records are made before any clock starts.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import event

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.tpm_support: the test CAs and the software TPM

from tests.tpm_support import TestCa, csr_for, pem, running_tpm, tpm_tools_missing, tpm_unit  # noqa: E402

from fabguard.api import parsing  # noqa: E402
from fabguard.domain.issuance import AttestationPolicy, FixtureFacts  # noqa: E402
from fabguard.domain.values import FixtureId, OrderId, ProductId, SiteId  # noqa: E402
from fabguard.fixture.openhtf_records import openhtf_record  # noqa: E402
from fabguard.pki import attestation  # noqa: E402
from fabguard.service.catalog import fixtures, orders, product_catalog  # noqa: E402
from fabguard.service.core.instance import Instance  # noqa: E402
from fabguard.service.core.seeding import init_instance  # noqa: E402
from fabguard.service.provisioning import attestation as attestation_settings  # noqa: E402
from fabguard.service.provisioning import issuance, testrecords  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--units", type=int, default=300, help="units provisioned under each policy (default 300)")
    args = p.parse_args(argv)
    os.environ.setdefault("FABGUARD_KEY_PASSPHRASE", "bench-passphrase-not-secret")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        init_instance(home, organization="Bench")
        inst = Instance.open(home)
        try:
            run(inst, args.units, Path(tmp))
        finally:
            inst.close()


def run(inst: Instance, n: int, tmp: Path) -> None:
    product_catalog.create_product(inst, product_id=ProductId("sensor"), name="Sensor", actor="bench")
    product_catalog.create_site(inst, site_id=SiteId("cm-a"), name="CM A", actor="bench")
    fixtures.create_fixture(inst, fixture_id=FixtureId("fx-1"), site_id=SiteId("cm-a"), actor="bench")
    fx = FixtureFacts("fx-1", "cm-a", False)
    vendor = TestCa.make("Bench SE vendor")
    signer = TestCa.make("Bench SE signer", issuer=vendor)
    rng = random.Random(1)
    units: dict[str, list[Any]] = {}
    for policy in ("off", "required"):
        batch = []
        for i in range(n):
            serial = f"SN-{policy}-{i:05d}"
            key = ec.generate_private_key(ec.SECP256R1())
            csr = csr_for(serial, key).public_bytes(serialization.Encoding.PEM).decode()
            evidence = {"format": "se-chain", "chain": [pem(signer.issue(serial, key.public_key())), pem(signer.cert)]}
            testrecords.record_test(inst, fx, openhtf_record(serial, "fx-1", fail=False, rng=rng))
            batch.append((serial, csr, evidence if policy == "required" else None))
        units[policy] = batch
    statements = [0]
    event.listen(inst.db.engine, "before_cursor_execute", lambda *a: statements.__setitem__(0, statements[0] + 1))
    print(f"# bench/attestation.py  units per policy: {n}  (SQLite, in process)")
    for policy in ("off", "required"):
        if policy == "required":
            attestation_settings.add_root(inst, ProductId("sensor"), "se", vendor.pem, actor="bench")
            attestation_settings.set_policy(inst, ProductId("sensor"), AttestationPolicy.REQUIRED, actor="bench")
        order = orders.create_order(
            inst, order_id=OrderId(f"po-{policy}"), product_id=ProductId("sensor"), site_id=SiteId("cm-a"),
            quota=n, actor="bench",
        ).id  # fmt: skip
        times, counts = [], []
        for serial, csr, evidence in units[policy]:
            request = parsing.unit_request(order, serial, csr, evidence, max_csr_bytes=16384)
            before, start = statements[0], time.perf_counter()
            issuance.provision_unit(inst, fx, request)
            times.append(time.perf_counter() - start)
            counts.append(statements[0] - before)
        print(
            f"policy {policy:<8} statements/unit {statistics.mean(counts):5.2f}  "
            f"median {statistics.median(times) * 1e3:6.2f} ms/unit  p95 {_p95(times) * 1e3:6.2f} ms"
        )
    now = datetime.now(UTC)
    serial, csr_pem, evidence = units["required"][0]
    parsed = attestation.parse_evidence(evidence)
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    print(f"verify se-chain         {_per_call(lambda: attestation.verify(parsed, csr, [vendor.cert], now)):8.1f} us")
    if (why := tpm_tools_missing()) is not None:
        print(f"verify tpm2-certify     skipped: {why}")
        return
    with running_tpm(tmp / "swtpm") as tpm:
        maker = TestCa.make("Bench TPM maker")
        ak = maker.issue_ak("AK", tpm.ak_public())
        made = tpm_unit(tpm, "SN-TPM")
    tpm_evidence = attestation.parse_evidence(made.attestation([ak]))
    print(
        f"verify tpm2-certify     {_per_call(lambda: attestation.verify(tpm_evidence, made.csr, [maker.cert], now)):8.1f} us"
    )


def _p95(xs: list[float]) -> float:
    return sorted(xs)[int(len(xs) * 0.95)]


def _per_call(f: Any, rounds: int = 500) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        f()
    return (time.perf_counter() - start) / rounds * 1e6


if __name__ == "__main__":
    main()
