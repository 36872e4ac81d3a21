"""Ledger benchmark: append rate inside a transaction, proof time at 1M entries, offline verification of 1M.
(``write_export(..., units=True)`` and ``measure_verify`` also serve bench/growth.py's audit of exports of units.)

    .venv/bin/python bench/ledger.py [--entries 1000000] [--appends 5000] [--database-url URL]

Prints a table. Figures are for this machine only; compare within one run.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from sqlalchemy import insert, update

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from fabguard.ledger import merkle  # noqa: E402
from fabguard.ledger.checkpoint import Checkpoint, sign_checkpoint, verifier_key  # noqa: E402
from fabguard.ledger.entry import encode_entry  # noqa: E402
from fabguard.store.db import Database  # noqa: E402
from fabguard.store.eventlog import EVENT_COUNTER, append_event  # noqa: E402
from fabguard.store.migrate import upgrade  # noqa: E402
from fabguard.store.models import Counter, Event, LedgerNode  # noqa: E402

ORIGIN = "bench.example/fabguard-ledger"


def entry(i: int) -> bytes:
    return encode_entry(
        seq=i + 1,
        at=datetime(2026, 11, 25, tzinfo=UTC),
        # Test records only: no unit, so no certificate file (``write_export(..., units=True)`` writes units).
        kind="test.recorded",
        actor="fixture:fx-sz-01",
        order_id="po-1042",
        fixture_id="fx-sz-01",
        serial=f"SN{i:010d}",
        code=None,
        detail={"record_sha256": f"{i:064x}", "outcome": "PASS", "site_id": "cm-shenzhen"},
    )


def unit_entry(i: int, cert_sha256: str) -> bytes:
    """Entry ``i`` of an export of units: even entries the unit's test record, odd ones its provisioning, with
    the server's detail (``unit.provisioned`` names the certificate's SHA-256, which the verifier checks the
    unit's file against)."""
    if i % 2 == 0:
        return entry(i)
    return encode_entry(
        seq=i + 1,
        at=datetime(2026, 11, 25, tzinfo=UTC),
        kind="unit.provisioned",
        actor="fixture:fx-sz-01",
        order_id="po-1042",
        fixture_id="fx-sz-01",
        serial=f"SN{i - 1:010d}",
        code=None,
        detail={
            "cert_serial": f"{i:032x}",
            "cert_sha256": cert_sha256,
            "key_fingerprint": hashlib.sha256(b"k%d" % i).hexdigest(),
            "product_id": "sensor-v2",
            "site_id": "cm-shenzhen",
        },
    )


class UnitCertificates:
    """Real device certificates (ECDSA P-256, as a DAC or IDevID is) signed by an issuing CA under a root, as
    ``ca/root.pem``, ``ca/issuing-*.pem`` and ``certs/<serial>.pem`` of an export. Each is the template's
    to-be-signed bytes with the unit's serial number and common name put in (both of fixed length, so no DER
    length changes), signed by the CA: one real signature a unit, without the builder's cost."""

    def __init__(self) -> None:
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.root = self._cert(_name("Bench Root"), _name("Bench Root"), self.root_key.public_key(), self.root_key, 1)
        self.ca = self._cert(_name("Bench Issuing"), _name("Bench Root"), self.ca_key.public_key(), self.root_key, 2)
        unit_key = ec.generate_private_key(ec.SECP256R1()).public_key()
        template = self._cert(_name(_SERIAL_MARK), self.ca.subject, unit_key, self.ca_key, _SN_BASE)
        self._tbs = template.tbs_certificate_bytes
        self._sn_at = self._tbs.index(_SN_BASE.to_bytes(16, "big"))
        self._cn_at = self._tbs.index(_SERIAL_MARK.encode())
        der = template.public_bytes(serialization.Encoding.DER)
        after_tbs = der.index(self._tbs) + len(self._tbs)
        self._algorithm = der[after_tbs : after_tbs + 2 + der[after_tbs + 1]]  # the signature's AlgorithmIdentifier

    @staticmethod
    def _cert(
        subject: x509.Name,
        issuer: x509.Name,
        key: ec.EllipticCurvePublicKey,
        signer: ec.EllipticCurvePrivateKey,
        sn: int,
    ) -> x509.Certificate:
        now = datetime(2026, 11, 1, tzinfo=UTC)
        builder = x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key)
        builder = builder.serial_number(sn).not_valid_before(now).not_valid_after(now + timedelta(days=3650))
        return builder.sign(signer, hashes.SHA256())

    def unit(self, serial: str, sn: int) -> tuple[bytes, str]:
        """A unit's certificate as PEM, and the SHA-256 of its DER (what the ledger entry records)."""
        tbs = bytearray(self._tbs)
        tbs[self._sn_at : self._sn_at + 16] = (_SN_BASE + sn).to_bytes(16, "big")
        tbs[self._cn_at : self._cn_at + len(_SERIAL_MARK)] = serial.encode()
        signature = self.ca_key.sign(bytes(tbs), ec.ECDSA(hashes.SHA256()))
        der = _tlv(0x30, bytes(tbs) + self._algorithm + _tlv(0x03, b"\x00" + signature))
        lines = [base64.b64encode(der[i : i + 48]) for i in range(0, len(der), 48)]
        pem = b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(lines) + b"\n-----END CERTIFICATE-----\n"
        return pem, hashlib.sha256(der).hexdigest()


_SERIAL_MARK = "SN0000000000"  # a unit's serial in the bench: SN and ten digits
_SN_BASE = 1 << 126  # certificate serial numbers of 16 bytes, positive, with no leading zero byte


def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    length = (
        bytes([n])
        if n < 0x80
        else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
    )
    return bytes([tag]) + length + body


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def bench_appends(url: str, n: int) -> float:
    db = Database(url)
    upgrade(db)
    now = datetime.now(UTC)
    start = time.perf_counter()
    for i in range(n):
        with db.transaction() as s:
            append_event(s, "unit.provisioned", at=now, order_id="po-1", serial=f"SN{i}", detail={"i": i})
    elapsed = time.perf_counter() - start
    db.dispose()
    return n / elapsed


def build_tree_db(url: str, n: int) -> Database:
    """A database whose ledger holds n leaves (nodes bulk-loaded; events only where proofs read them)."""
    db = Database(url)
    upgrade(db)
    cr = merkle.CompactRange()
    batch: list[dict[str, object]] = []
    with db.transaction() as s:
        for i in range(n):
            batch.extend({"level": lv, "idx": ix, "hash": h} for lv, ix, h in cr.append(merkle.leaf_hash(entry(i))))
            if len(batch) >= 50_000:
                s.execute(insert(LedgerNode), batch)
                batch.clear()
        if batch:
            s.execute(insert(LedgerNode), batch)
        s.execute(update(Counter).where(Counter.name == EVENT_COUNTER).values(value=n))
        for i in (0, n // 2, n - 1):
            s.add(
                Event(
                    seq=i + 1,
                    at=datetime(2026, 11, 25, tzinfo=UTC),
                    kind="unit.provisioned",
                    detail="{}",
                    entry=entry(i),
                )
            )
    return db


def bench_proofs(db: Database, n: int) -> tuple[float, float]:
    from sqlalchemy import select

    def reader(s: object) -> merkle.NodeReader:
        def get(level: int, idx: int) -> bytes:
            return bytes(
                s.execute(  # type: ignore[attr-defined]
                    select(LedgerNode.hash).where(LedgerNode.level == level, LedgerNode.idx == idx)
                ).scalar_one()
            )

        return get

    rounds = 50
    with db.read() as s:
        get = reader(s)
        root = merkle.root(get, n)
        start = time.perf_counter()
        for k in range(rounds):
            index = (k * 7919) % n
            proof = merkle.inclusion_proof(get, index, n)
        incl = (time.perf_counter() - start) / rounds
        merkle.verify_inclusion(merkle.leaf_hash(entry(index)), index, n, proof, root)
        start = time.perf_counter()
        for k in range(rounds):
            first = max(1, (k * 104729) % n)
            merkle.consistency_proof(get, first, n)
        cons = (time.perf_counter() - start) / rounds
    return incl, cons


def write_export(directory: Path, n: int, *, units: bool = False) -> str:
    """An export of ``n`` entries as ``fabguard ledger export`` writes one; with ``units``, every second entry
    provisions a unit (so ``n // 2`` units), whose certificate file, CA certificates and manifest map it holds."""
    key = ed25519.Ed25519PrivateKey.generate()
    (directory / "checkpoints").mkdir(parents=True)
    certs = UnitCertificates() if units else None
    serials: list[str] = []
    if certs is not None:
        (directory / "certs").mkdir()
        (directory / "ca").mkdir()
        (directory / "ca" / "root.pem").write_bytes(certs.root.public_bytes(serialization.Encoding.PEM))
        (directory / "ca" / "issuing-bench.pem").write_bytes(certs.ca.public_bytes(serialization.Encoding.PEM))
    cr = merkle.CompactRange()
    with (directory / "entries.jsonl").open("wb") as fh:
        for i in range(n):
            if certs is not None and i % 2 == 1:
                serial = f"SN{i - 1:010d}"
                pem, sha = certs.unit(serial, i)
                (directory / "certs" / f"{serial}.pem").write_bytes(pem)
                serials.append(serial)
                e = unit_entry(i, sha)
            else:
                e = entry(i)
            fh.write(e + b"\n")
            cr.push(merkle.leaf_hash(e))
            if i + 1 in (n // 2, n):
                note = sign_checkpoint(Checkpoint(ORIGIN, i + 1, cr.root()), ORIGIN, key)
                (directory / "checkpoints" / f"{i + 1:012d}.txt").write_text(note)
    vkey = verifier_key(ORIGIN, key.public_key())
    (directory / "ledger.pub").write_text(vkey + "\n")
    figures = {"entries": n, "checkpoints": 2 if n // 2 else 1, "certificates": len(serials), "tree_size": n}
    if certs is None:
        (directory / "manifest.json").write_text(json.dumps(figures))
    else:  # as the server writes it (json.dumps(indent=2)), a line at a time
        with (directory / "manifest.json").open("w") as out:
            out.write('{\n  "format": "fabguard-ledger-export/2",\n')
            out.write("".join(f'  "{k}": {v},\n' for k, v in figures.items()))
            out.write('  "certificate_files": {' + ("\n" if serials else "}\n}\n"))
            for at, serial in enumerate(serials):
                end = ",\n" if at < len(serials) - 1 else "\n  }\n}\n"
                out.write(
                    f'    "certs/{serial}.pem": {{\n      "serial": "{serial}",\n      "order_id": "po-1042"\n    }}{end}'
                )
    return vkey


VERIFY = """
import sys, time
from pathlib import Path
sys.path.insert(0, {src!r})
from fabguard.ledger.verify import verify_export
start = time.perf_counter()
report = verify_export(Path({d!r}), verifier={vkey!r})
elapsed = time.perf_counter() - start
# VmHWM is this process image's own peak (ru_maxrss would include the parent's peak from before exec).
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(report.entries, elapsed, hwm, report.certificates_checked)
"""


def measure_verify(directory: Path, vkey: str, src: Path = ROOT / "src") -> tuple[int, float, int, int]:
    """``verify_export`` of ``directory`` in a process of its own (``src``: the fabguard it imports):
    entries, seconds, peak resident KiB (VmHWM), certificate files checked."""
    code = VERIFY.format(src=str(src), d=str(directory), vkey=vkey)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]), float(out[1]), int(out[2]), int(out[3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--appends", type=int, default=5000)
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL for the append and proof figures")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fabguard-bench-ledger-") as tmp:
        base = Path(tmp)
        url = args.database_url or f"sqlite:///{base / 'appends.db'}"
        print(f"appending {args.appends} events, one transaction each ...", flush=True)
        rate = bench_appends(url, args.appends)
        print(f"building a {args.entries:,}-leaf tree ...", flush=True)
        t0 = time.perf_counter()
        tree_url = f"sqlite:///{base / 'tree.db'}"
        db = build_tree_db(tree_url, args.entries)
        build = time.perf_counter() - t0
        incl, cons = bench_proofs(db, args.entries)
        db.dispose()
        print(f"writing an export of {args.entries:,} entries ...", flush=True)
        vkey = write_export(base / "export", args.entries)
        size_mb = (base / "export" / "entries.jsonl").stat().st_size / 1e6
        entries, verify_s, maxrss_kb, _ = measure_verify(base / "export", vkey)
    print()
    print(f"{'ledger benchmark':<52}{'figure':>18}")
    print("-" * 70)
    print(f"{'appends/s (own transaction each, ' + url.split(':')[0] + ')':<52}{rate:>15,.0f}/s")
    print(f"{'tree bulk load (' + format(args.entries, ',') + ' leaves, SQLite)':<52}{build:>16.1f} s")
    print(f"{'inclusion proof at ' + format(args.entries, ',') + ' (from stored nodes)':<52}{incl * 1e3:>15.2f} ms")
    print(f"{'consistency proof at ' + format(args.entries, ',') + ' (from stored nodes)':<52}{cons * 1e3:>15.2f} ms")
    print(f"{'offline verify of ' + format(entries, ',') + f' entries ({size_mb:.0f} MB)':<52}{verify_s:>16.2f} s")
    print(f"{'  peak memory of the verifier process (VmHWM)':<52}{maxrss_kb / 1024:>15.1f} MB")
    print(f"{'  target':<52}{'< 5 s':>18}")


if __name__ == "__main__":
    main()
