"""Encrypted firmware: per-unit releases per second for a 1 MiB image, and the crypto underneath.

    .venv/bin/python bench/firmware.py [--units N] [--clients K] [--size BYTES]

A temporary instance (SQLite) gets one product, one site, one order of 2N units, and N provisioned
units (test records and certificates made before any clock starts). One release of ``--size`` bytes is
uploaded, approved and attached. Then:

* the crypto alone: sealing and opening the image at rest (AES-256-GCM), wrapping a data key to a unit
  (ECIES P-256) and the device's whole check-unwrap-decrypt of one package;
* per-unit releases in this process through the service (decision, wrap, ledger event, commit, package);
* per-unit releases over mutual TLS: the real app on a server thread of this process, K fixture threads
  (they share this process's GIL and cores, so this is the whole loop, not the server alone).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from fabguard.api.parsing import unit_request
from fabguard.api.server import ServerThread
from fabguard.domain.issuance import FixtureFacts
from fabguard.domain.values import FixtureId, ProductId, SiteId
from fabguard.firmware import envelope
from fabguard.fixture.client import FixtureClient, enroll
from fabguard.fixture.device import SimulatedDevice
from fabguard.fixture.firmware import fetch_package, load_firmware_public_key, open_package
from fabguard.fixture.openhtf_records import openhtf_record
from fabguard.pki.keys import PASSPHRASE_ENV, PASSPHRASE_FILE_ENV
from fabguard.service.catalog import fixtures, orders, product_catalog
from fabguard.service.core.config import DATABASE_ENV
from fabguard.service.core.instance import Instance
from fabguard.service.core.seeding import init_instance
from fabguard.service.firmware import release_lifecycle, sealing_keys, unit_releases
from fabguard.service.firmware.unit_releases import UnitFirmwareRequest
from fabguard.service.provisioning import issuance, testrecords

# The bench's own throwaway instance: this passphrase protects keys that are deleted at exit.
BENCH_PASSPHRASE = "bench-passphrase-not-a-secret"


def rate(fn: Callable[[], object], n: int) -> float:
    fn()  # warm up
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - t0)


def crypto_figures(size: int) -> list[tuple[str, str]]:
    image = os.urandom(size)
    sealed = envelope.seal_image(image, "fw_bench")
    mib = size / (1024 * 1024)
    seal = rate(lambda: envelope.seal_image(image, "fw_bench"), 50)
    opened = rate(lambda: envelope.open_image(sealed.data_key, sealed.nonce, sealed.ciphertext, "fw_bench"), 50)
    device = ec.generate_private_key(ec.SECP256R1())
    digest = hashlib.sha256(b"manifest").digest()
    wrap = rate(
        lambda: envelope.wrap_to_unit(
            sealed.data_key, device.public_key(), serial="SN", release_id="fw_bench", manifest_sha256=digest
        ),
        2000,
    )
    return [
        (f"at-rest encryption (AES-256-GCM, {mib:g} MiB image)", f"{seal * mib:,.0f} MiB/s"),
        (f"at-rest decryption (AES-256-GCM, {mib:g} MiB image)", f"{opened * mib:,.0f} MiB/s"),
        ("data key wrapped to a unit (ECIES P-256)", f"{wrap:,.0f} /s"),
    ]


def setup(home: Path, units: int, size: int) -> tuple[Instance, str, str, list[SimulatedDevice], FixtureFacts]:
    init_instance(home, organization="Bench Devices")
    inst = Instance.open(home)
    product_catalog.create_product(inst, product_id=ProductId("sensor"), name="Sensor", actor="bench")
    product_catalog.create_site(inst, site_id=SiteId("cm-a"), name="CM A", actor="bench")
    order = orders.create_order(
        inst, product_id=ProductId("sensor"), site_id=SiteId("cm-a"), quota=2 * units, actor="bench"
    ).id
    made, _ = fixtures.create_fixture(inst, fixture_id=FixtureId("fx-bench"), site_id=SiteId("cm-a"), actor="bench")
    facts = FixtureFacts(made.id, made.site_id, False)
    devices = []
    rng = random.Random(1)
    for i in range(units):
        device = SimulatedDevice(f"SN-B{i:06d}")
        testrecords.record_test(inst, facts, openhtf_record(device.serial, facts.id, fail=False, rng=rng))
        unit = unit_request(order, device.serial, device.csr_pem(), max_csr_bytes=inst.limits.max_csr_bytes)
        issuance.provision_unit(inst, facts, unit)
        devices.append(device)
    release = release_lifecycle.upload_release(
        inst, product_id="sensor", version="1.0.0", image=os.urandom(size), actor="bench", max_image_bytes=size
    )
    release_lifecycle.approve_release(inst, release.id, actor="bench-approver")
    release_lifecycle.attach_release(inst, release.id, order, actor="bench")
    return inst, order, release.id, devices, facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=300)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--size", type=int, default=1024 * 1024)
    args = parser.parse_args()
    os.environ[PASSPHRASE_ENV] = BENCH_PASSPHRASE
    os.environ.pop(PASSPHRASE_FILE_ENV, None)
    os.environ.pop(DATABASE_ENV, None)
    rows = crypto_figures(args.size)
    mib = args.size / (1024 * 1024)
    with tempfile.TemporaryDirectory(prefix="fabguard-bench-firmware-") as tmp:
        print(f"provisioning {args.units} units and uploading a {mib:g} MiB release ...", flush=True)
        inst, order, rid, devices, facts = setup(Path(tmp) / "home", args.units, args.size)
        key = load_firmware_public_key(sealing_keys.public_key_pem(inst).encode())

        sample = unit_releases.release_to_unit(inst, facts, UnitFirmwareRequest(rid, order, devices[0].serial))
        device_open = rate(
            lambda: open_package(sample.package, device_key=devices[0].key, serial=devices[0].serial, firmware_key=key),
            50,
        )
        rows.append((f"device: check, unwrap, decrypt one package ({mib:g} MiB)", f"{device_open:,.1f} /s"))

        t0 = time.perf_counter()
        for d in devices:
            unit_releases.release_to_unit(inst, facts, UnitFirmwareRequest(rid, order, d.serial))
        in_process = len(devices) / (time.perf_counter() - t0)
        rows.append((f"per-unit releases, in process (service, SQLite, {mib:g} MiB)", f"{in_process:,.1f} /s"))

        with ServerThread(inst) as server:
            _, token = fixtures.create_fixture(
                inst, fixture_id=FixtureId("fx-tls"), site_id=SiteId("cm-a"), actor="bench"
            )
            creds = enroll(server.url, token, Path(tmp) / "fx-tls", ca_file=inst.cas.cert_path("root"))
            with FixtureClient(creds, max_connections=args.clients) as client:
                fetch_package(client, order_id=order, serial=devices[0].serial, release_id=rid)  # warm up
                t0 = time.perf_counter()
                with ThreadPoolExecutor(args.clients) as pool:
                    sizes = list(
                        pool.map(
                            lambda d: len(fetch_package(client, order_id=order, serial=d.serial, release_id=rid)),
                            devices,
                        )
                    )
                over_tls = len(devices) / (time.perf_counter() - t0)
        assert all(s > args.size for s in sizes)
        rows.append(
            (f"per-unit releases over mutual TLS ({args.clients} fixture threads, {mib:g} MiB)", f"{over_tls:,.1f} /s")
        )
        rows.append(("  as payload", f"{over_tls * mib:,.0f} MiB/s"))
        inst.close()
    print()
    print(f"{'firmware benchmark':<70}{'figure':>16}")
    print("-" * 86)
    for name, figure in rows:
        print(f"{name:<70}{figure:>16}")


if __name__ == "__main__":
    main()
