"""Witness benchmark: checking and cosigning a checkpoint (the witness's step), and counting cosignatures (the auditor's).

    .venv/bin/python bench/witness.py [--entries 1048576] [--steps 2000] [--witnesses 16]

The witness's step is what `fabguard witness cosign` does per checkpoint, without the state file: parse the
add-checkpoint body, verify the log's signature, verify the RFC 9162 consistency proof, cosign. Prints a
table. Figures are for this machine only; compare within one run.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import random
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from fabguard.ledger import merkle  # noqa: E402
from fabguard.ledger.checkpoint import Checkpoint, sign_checkpoint, verifier_key  # noqa: E402
from fabguard.ledger.cosignature import (  # noqa: E402
    append_cosignatures,
    cosign,
    cosigner_verifier_key,
    parse_cosigner_key,
    valid_cosigners,
)
from fabguard.ledger.witness import AddCheckpoint, WitnessState, check_extension, format_add_checkpoint  # noqa: E402

ORIGIN = "bench.example/fabguard-ledger"


def levels(n: int) -> list[list[bytes]]:
    """Every complete subtree's hash, level by level, for leaves 0..n-1."""
    out = [[hashlib.sha256(b"\x00" + i.to_bytes(8, "big")).digest() for i in range(n)]]
    while len(out[-1]) > 1:
        prev = out[-1]
        out.append([merkle.node_hash(prev[i], prev[i + 1]) for i in range(0, len(prev) - 1, 2)])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1 << 20)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--witnesses", type=int, default=16)
    args = ap.parse_args()

    t0 = time.perf_counter()
    tree = levels(args.entries)
    build = time.perf_counter() - t0
    get = lambda level, idx: tree[level][idx]  # noqa: E731
    log_key = ed25519.Ed25519PrivateKey.generate()
    log_verifier = verifier_key(ORIGIN, log_key.public_key())
    wkey = ed25519.Ed25519PrivateKey.generate()
    rng = random.Random(1)
    sizes = sorted(rng.sample(range(1, args.entries + 1), args.steps + 1))
    requests = []
    for old, new in itertools.pairwise(sizes):
        note = sign_checkpoint(Checkpoint(ORIGIN, new, merkle.root(get, new)), ORIGIN, log_key)
        requests.append(format_add_checkpoint(old, merkle.consistency_proof(get, old, new), note))

    state = WitnessState(ORIGIN, sizes[0], merkle.root(get, sizes[0]))
    t0 = time.perf_counter()
    for text in requests:
        request = AddCheckpoint.parse(text)
        cp = check_extension(state, request, log_verifier)
        cosign(cp.body(), "w.example/w", wkey, 1_790_000_000)
        state = WitnessState(ORIGIN, cp.size, cp.root)
    step = (time.perf_counter() - t0) / len(requests)

    keys = [ed25519.Ed25519PrivateKey.generate() for _ in range(args.witnesses)]
    names = [f"w{i}.example/w" for i in range(args.witnesses)]
    cp = Checkpoint(ORIGIN, args.entries, merkle.root(get, args.entries))
    note = sign_checkpoint(cp, ORIGIN, log_key)
    note = append_cosignatures(note, [cosign(cp.body(), n, k, 1_790_000_000) for n, k in zip(names, keys, strict=True)])
    verifiers = [parse_cosigner_key(cosigner_verifier_key(n, k.public_key())) for n, k in zip(names, keys, strict=True)]
    rounds = 200
    t0 = time.perf_counter()
    for _ in range(rounds):
        assert len(valid_cosigners(note, verifiers)) == args.witnesses
    audit = (time.perf_counter() - t0) / rounds

    print("| figure | value |\n|---|---:|")
    print(f"| tree of {args.entries:,} leaves built in memory (setup) | {build:.1f} s |")
    print(
        f"| witness step (parse, log signature, consistency proof, cosign), mean of {len(requests):,} | {step * 1e3:.3f} ms |"
    )
    print(f"| witness steps per second, one core | {1 / step:,.0f} |")
    print(f"| auditor: a note with {args.witnesses} cosignatures checked | {audit * 1e3:.3f} ms |")


if __name__ == "__main__":
    main()
