"""IDevID certificates signed per second with the issuing CA key in an encrypted file and in SoftHSM2.

    .venv/bin/python bench/signing.py [--count N] [--threads 1,4] [--module /usr/lib/softhsm/libsofthsm2.so]

Each backend gets a root and an issuing CA key (SoftHSM2: a throwaway token in a private store in a
temporary directory, deleted at exit). The device public keys are made before any clock starts; the
timed part is ``profiles.idevid_certificate`` N times, from one thread and then split over K threads;
each cell is the median of a few runs, alternating between the backends.
Every certificate is checked against the issuing CA afterwards, outside the clock.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from fabguard.domain.values import Serial
from fabguard.pki import profiles
from fabguard.pki.backends import FileKeyBackend, KeyBackend
from fabguard.pki.keys import new_signing_key

ORGANIZATION = "Bench Devices"
SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
TOKEN = "fabguard-bench"
# A throwaway token and key files deleted at exit: these protect nothing.
BENCH_PASSPHRASE = b"bench-passphrase-not-a-secret"


def issuing_ca(backend: KeyBackend, now: datetime) -> profiles.Issuer:
    root = profiles.self_signed_root(backend.generate("root"), ORGANIZATION, "Bench Root CA", now)
    key = backend.generate("issuing")
    cert = profiles.intermediate_ca(root, key.public_key(), ORGANIZATION, "Bench Issuing CA", now)
    return profiles.Issuer(cert, backend.load("issuing"))


def issue(
    issuer: profiles.Issuer, devices: Sequence[ec.EllipticCurvePublicKey], first: int, now: datetime
) -> list[x509.Certificate]:
    return [
        profiles.idevid_certificate(issuer, public, Serial(f"SN-BENCH-{first + i:06d}"), ORGANIZATION, "widget", now)
        for i, public in enumerate(devices)
    ]


def certs_per_second(issuer: profiles.Issuer, devices: Sequence[ec.EllipticCurvePublicKey], threads: int) -> float:
    now = datetime.now(UTC)
    share = -(-len(devices) // threads)
    chunks = [(devices[i : i + share], i) for i in range(0, len(devices), share)]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        start = time.perf_counter()
        batches = list(pool.map(lambda chunk: issue(issuer, chunk[0], chunk[1], now), chunks))
        elapsed = time.perf_counter() - start
    certs = [cert for batch in batches for cert in batch]
    assert len(certs) == len(devices)
    for cert in certs:
        cert.verify_directly_issued_by(issuer.certificate)
    return len(certs) / elapsed


def softhsm_token(directory: Path) -> bytes:
    """Make a private SoftHSM2 store with one token; SOFTHSM2_CONF must be set before the module loads."""
    tokens = directory / "tokens"
    tokens.mkdir(parents=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    pin, so_pin = secrets.token_hex(8), secrets.token_hex(8)
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", TOKEN, "--pin", pin, "--so-pin", so_pin],
        check=True,
        capture_output=True,
    )
    return pin.encode()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=2000, help="certificates per run (default 2000)")
    parser.add_argument("--threads", default="1,4", help="comma-separated thread counts (default 1,4)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; the median is shown (default 3)")
    parser.add_argument("--module", default=SOFTHSM_MODULE, help="the SoftHSM2 PKCS#11 module")
    args = parser.parse_args(argv)
    thread_counts = [int(t) for t in args.threads.split(",")]
    if not Path(args.module).is_file() or shutil.which("softhsm2-util") is None:
        print(f"SoftHSM2 is not installed ({args.module}, softhsm2-util): apt-get install softhsm2", file=sys.stderr)
        return 2

    from fabguard.pki.pkcs11 import Pkcs11KeyBackend

    tmp = Path(tempfile.mkdtemp(prefix="fabguard-bench-signing-"))
    try:
        pin = softhsm_token(tmp / "softhsm")
        now = datetime.now(UTC)
        devices = [new_signing_key().public_key() for _ in range(args.count)]
        with Pkcs11KeyBackend(args.module, TOKEN, pin) as hsm:
            backends: dict[str, KeyBackend] = {
                "file": FileKeyBackend(tmp / "keys", BENCH_PASSPHRASE),
                "softhsm2": hsm,
            }
            issuers = {name: issuing_ca(backend, now) for name, backend in backends.items()}
            # Runs alternate between the backends so that a noisy moment on the machine hits both.
            samples: dict[tuple[str, int], list[float]] = {}
            for _ in range(args.repeat):
                for threads in thread_counts:
                    for name, issuer in issuers.items():
                        samples.setdefault((name, threads), []).append(certs_per_second(issuer, devices, threads))
            rates = {cell: statistics.median(runs) for cell, runs in samples.items()}
            descriptions = {name: backend.describe() for name, backend in backends.items()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"IDevID certificates signed per second, N={args.count} per run, median of {args.repeat} runs")
    print(
        f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, {platform.platform()}"
    )
    for name, text in descriptions.items():
        print(f"  {name}: {text}")
    print()
    print(f"{'threads':>7}  {'file certs/s':>12}  {'SoftHSM2 certs/s':>16}  {'SoftHSM2 / file':>15}")
    for threads in thread_counts:
        file_rate, hsm_rate = rates[("file", threads)], rates[("softhsm2", threads)]
        print(f"{threads:>7}  {file_rate:>12,.0f}  {hsm_rate:>16,.0f}  {hsm_rate / file_rate:>15.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
