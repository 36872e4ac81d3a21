"""Field checks: challenge + verify per second, in process (the service) and over HTTPS (the API).

    .venv/bin/python bench/field.py [--devices 20] [--checks 500] [--clients 4] [--batch 100]
                                    [--database-url URL]

A temporary instance provisions ``--devices`` units through the real server (mutual TLS), then times
``--checks`` genuine checks: the service in this process one at a time (a stateless challenge, then a
group of one: one transaction), the service in batches of ``--batch`` (one transaction a batch), then
the API from ``--clients`` threads (two HTTPS requests each, keep-alive), and last the analytics
projector folding every ``field.checked`` event those checks recorded (events/s: what recording every
check as an event costs later, ADR 0015). A baseline is the crypto alone: the chain signature check
and the device signature check. Prints a table; figures are for this machine only, compare within one
run. bench/peer.py has the field-check mode beside cfssl (batches over HTTPS, several processes).
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import ssl
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from cryptography import x509

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from fabguard.api.server import ServerThread  # noqa: E402
from fabguard.domain.values import FixtureId, ProductId, SiteId  # noqa: E402
from fabguard.fixture.client import FixtureClient, enroll  # noqa: E402
from fabguard.fixture.device import SimulatedDevice  # noqa: E402
from fabguard.fixture.openhtf_records import openhtf_record  # noqa: E402
from fabguard.pki.field import signature_valid, signed_by  # noqa: E402
from fabguard.pki.keys import PASSPHRASE_ENV, PASSPHRASE_FILE_ENV  # noqa: E402
from fabguard.service.access import tokens  # noqa: E402
from fabguard.service.analytics import dashboard_queries  # noqa: E402
from fabguard.service.catalog import fixtures, orders, product_catalog  # noqa: E402
from fabguard.service.core.instance import Instance  # noqa: E402
from fabguard.service.core.seeding import init_instance  # noqa: E402
from fabguard.service.field import genuineness  # noqa: E402
from fabguard.store import rollups  # noqa: E402
from fabguard.store.eventlog import event_count  # noqa: E402

BENCH_PASSPHRASE = "bench-passphrase-not-a-secret"  # protects throwaway keys deleted at exit


def provision(inst: Instance, server: ServerThread, tmp: Path, n: int) -> list[SimulatedDevice]:
    product_catalog.create_product(inst, product_id=ProductId("sensor"), name="Sensor", actor="bench")
    product_catalog.create_site(inst, site_id=SiteId("cm-a"), name="CM A", actor="bench")
    order = orders.create_order(inst, product_id=ProductId("sensor"), site_id=SiteId("cm-a"), quota=n, actor="bench").id
    _, token = fixtures.create_fixture(inst, fixture_id=FixtureId("fx-bench"), site_id=SiteId("cm-a"), actor="bench")
    creds = enroll(server.url, token, tmp / "fx", ca_file=inst.cas.cert_path("root"))
    devices = []
    with FixtureClient(creds) as client:
        for i in range(n):
            d = SimulatedDevice(f"SN-B{i:05d}")
            client.upload_test_record(openhtf_record(d.serial, "fx-bench", fail=False, rng=random.Random(i)))
            d.certificate_pem = client.provision(order, d.serial, d.csr_pem()).certificate_pem
            devices.append(d)
    return devices


def in_process(inst: Instance, devices: list[SimulatedDevice], checks: int) -> float:
    origin = genuineness.Origin("bench", "bench-desk", "127.0.0.1")
    start = time.perf_counter()
    for i in range(checks):
        d = devices[i % len(devices)]
        nonce = genuineness.issue_challenge(inst, actor="bench")["nonce"]
        body = d.field_answer(nonce)
        answer = genuineness.parse_answer(
            inst, origin, nonce=nonce, signature=body["signature"], chain_pem=body["chain"]
        )
        assert genuineness.verify(inst, answer, origin)["genuine"] is True
    return checks / (time.perf_counter() - start)


def in_batches(inst: Instance, devices: list[SimulatedDevice], checks: int, batch: int) -> float:
    start = time.perf_counter()
    for at in range(0, checks, batch):
        group = [devices[(at + i) % len(devices)] for i in range(min(batch, checks - at))]
        nonces = [c["nonce"] for c in genuineness.issue_challenges(inst, actor="bench", count=len(group))]
        raw = [
            genuineness.RawAnswer(n, d.answer_challenge(n), d.certificate_pem or "", "bench-desk")
            for d, n in zip(group, nonces, strict=True)
        ]
        results = genuineness.verify_batch(inst, raw, actor="bench", client="127.0.0.1")
        assert all(isinstance(r, dict) and r["genuine"] is True for r in results), results[:2]
    return checks / (time.perf_counter() - start)


def fold(inst: Instance) -> float:
    with inst.db.read() as s:
        events = event_count(s) - rollups.read_cursor(s)
    start = time.perf_counter()
    dashboard_queries.refresh(inst, max_events=None)
    return events / (time.perf_counter() - start)


def over_https(inst: Instance, url: str, devices: list[SimulatedDevice], checks: int, clients: int) -> float:
    _, secret = tokens.create_token(inst, name="bench-desk", role="field", actor="bench")
    ctx = ssl.create_default_context(cafile=str(inst.cas.cert_path("root")))

    def run(k: int) -> int:
        done = 0
        with httpx.Client(base_url=url, verify=ctx, headers={"Authorization": f"Bearer {secret}"}) as http:
            for i in range(k, checks, clients):
                d = devices[i % len(devices)]
                nonce = http.post("/api/v1/field/challenge").json()["nonce"]
                r = http.post("/api/v1/field/verify", json=d.field_answer(nonce, source=f"desk-{k}"))
                done += r.status_code == 200 and r.json()["genuine"] is True
        return done

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        done = sum(pool.map(run, range(clients)))
    rate = checks / (time.perf_counter() - start)
    assert done == checks, f"{checks - done} checks were not genuine"
    return rate


def crypto_only(inst: Instance, devices: list[SimulatedDevice], checks: int) -> float:
    ca = inst.cas.certificate("issuing")
    leaves = [x509.load_pem_x509_certificate((d.certificate_pem or "").encode()) for d in devices]
    nonce = os.urandom(32)
    signatures = [base64.b64decode(d.answer_challenge(nonce.hex())) for d in devices]
    start = time.perf_counter()
    for i in range(checks):
        j = i % len(devices)
        assert signed_by(leaves[j], ca) and signature_valid(leaves[j], nonce, signatures[j])
    return checks / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--checks", type=int, default=500)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    os.environ[PASSPHRASE_ENV] = BENCH_PASSPHRASE
    os.environ.pop(PASSPHRASE_FILE_ENV, None)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        init_instance(home, organization="Bench Devices", database_url=args.database_url)
        inst = Instance.open(home)
        server = ServerThread(inst).start()
        try:
            devices = provision(inst, server, Path(tmp), args.devices)
            rows = [
                ("crypto only (chain + device signature)", crypto_only(inst, devices, args.checks)),
                ("service, in process (challenge + verify)", in_process(inst, devices, args.checks)),
                (
                    f"service, in process, batches of {args.batch}",
                    in_batches(inst, devices, args.checks, args.batch),
                ),
                (
                    f"API over HTTPS, {args.clients} clients",
                    over_https(inst, server.url, devices, args.checks, args.clients),
                ),
            ]
            server.stop()  # its projector would fold the events first
            rows.append(("projector: fold of every event so far (events/s)", fold(inst)))
        finally:
            server.stop()
            inst.close()
    engine = "PostgreSQL" if args.database_url else "SQLite"
    print(f"field checks, {engine}, {args.checks} checks over {args.devices} devices")
    print(f"{'mode':<45} {'checks/s':>10}")
    for name, rate in rows:
        print(f"{name:<45} {rate:>10,.0f}")


if __name__ == "__main__":
    main()
