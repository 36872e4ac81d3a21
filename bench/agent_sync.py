"""Agent sync benchmark: how long the central server's check of a site agent's log takes (pure part).

    .venv/bin/python bench/agent_sync.py [--units 2000]

Builds a lease, an agent CA and an agent log of N provisioned units with real certificates in memory,
then times ``ledger.agent_sync.verify_sync`` (checkpoint signature, Merkle root and prefix, lease
bounds, every certificate's signature, key and serial). Figures are for this machine only.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from fabguard.domain.values import Serial  # noqa: E402
from fabguard.ledger import merkle  # noqa: E402
from fabguard.ledger.agent_sync import verify_sync  # noqa: E402
from fabguard.ledger.checkpoint import Checkpoint, sign_checkpoint, verifier_key  # noqa: E402
from fabguard.ledger.entry import encode_entry  # noqa: E402
from fabguard.ledger.lease import Lease  # noqa: E402
from fabguard.pki import profiles  # noqa: E402
from fabguard.pki.keys import spki_fingerprint  # noqa: E402

ORIGIN = "agent.bench/fabguard-ledger"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=2000)
    n = parser.parse_args().units
    now = datetime.now(UTC)
    root = profiles.self_signed_root(ec.generate_private_key(ec.SECP256R1()), "Bench", "Bench Root", now)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    agent_ca = profiles.agent_issuing_ca(root, ca_key.public_key(), "Bench", "Bench Agent CA", "sensor", now)
    issuer = profiles.Issuer(agent_ca, ca_key)
    ledger_key = ed25519.Ed25519PrivateKey.generate()
    agent_key = verifier_key(ORIGIN, ledger_key.public_key())
    lease = Lease("lease-bench", "po-1", "cm-a", "sensor", n, now, now + timedelta(hours=8), "", agent_key, "")
    started = time.perf_counter()
    entries, certificates = [], {}
    for i in range(n):
        device = ec.generate_private_key(ec.SECP256R1()).public_key()
        cert = profiles.idevid_certificate(issuer, device, Serial(f"SN{i:08d}"), "Bench", "sensor", now)
        der = cert.public_bytes(serialization.Encoding.DER)
        sha = hashlib.sha256(der).hexdigest()
        certificates[sha] = cert.public_bytes(serialization.Encoding.PEM).decode()
        detail = {"cert_sha256": sha, "key_fingerprint": spki_fingerprint(device), "site_id": "cm-a"}
        entries.append(
            encode_entry(
                seq=i + 1,
                at=now,
                kind="unit.provisioned",
                actor="fixture:fx",
                order_id="po-1",
                fixture_id="fx",
                serial=f"SN{i:08d}",
                code=None,
                detail=detail,
            )
        )
    built = time.perf_counter() - started
    cp = Checkpoint(ORIGIN, n, merkle.mth([merkle.leaf_hash(e) for e in entries]))
    note = sign_checkpoint(cp, ORIGIN, ledger_key)
    started = time.perf_counter()
    verified = verify_sync(lease, agent_ca, entries, note, certificates, (0, merkle.EMPTY_ROOT))
    took = time.perf_counter() - started
    assert len(verified.new_units) == n
    print("| units | build the log s | verify_sync s | units verified/s |")
    print("| ---: | ---: | ---: | ---: |")
    print(f"| {n:,} | {built:.2f} | {took:.2f} | {n / took:,.0f} |")


if __name__ == "__main__":
    main()
