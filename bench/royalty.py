"""Royalty statement and licence benchmark: the pure statement over a synthetic ledger, and licence checks.

    .venv/bin/python bench/royalty.py [--units 1000000]

Builds decoded ledger entries as an export holds them (orders at 4 sites, rate changes every 100,000
units, an order override, a refusal per 50 units, a revocation per 200) and times
``fabguard.ledger.royalty.royalty_statement`` over them for the whole ledger and for one site and one
month, in entries/s (and the reconciliation of the same entries, for scale); then times signing and device-side verification of a licence (the fixture SDK's
``verify_licence``) in licences/s. Figures are for this machine only.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from fabguard.domain.values import Serial
from fabguard.fixture.licence import verify_licence
from fabguard.ledger.entry import format_time
from fabguard.ledger.reconcile import Scope, reconcile
from fabguard.ledger.royalty import RoyaltyScope, royalty_statement
from fabguard.pki import profiles
from fabguard.pki.licence import licence_body, licence_signer_certificate, sign_licence

START = datetime(2027, 1, 1, tzinfo=UTC)


def entries(units: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(kind: str, at: datetime, order: str | None, **kw: Any) -> None:
        detail = kw.pop("detail", {})
        out.append({"index": len(out), "at": format_time(at), "kind": kind, "order_id": order, "serial": None,
                    "code": None, **kw, "detail": detail})  # fmt: skip

    for i in range(8):
        add("order.created", START, f"po-{i}", detail={"product_id": "sensor", "site_id": f"cm-{i % 4}"})
    add("royalty.rate_set", START, "po-3", detail={"product_id": "sensor", "amount": "0.11", "currency": "EUR",
                                                   "effective_from": format_time(START)})  # fmt: skip
    step = timedelta(seconds=30 * 86400 * 6 / units)  # six months of production
    for n in range(units):
        at = START + step * n
        if n % 100_000 == 0:
            rate = {"product_id": "sensor", "amount": f"0.{40 + n // 100_000:02d}", "currency": "EUR",
                    "effective_from": format_time(at)}  # fmt: skip
            add("royalty.rate_set", at, None, detail=rate)
        order = f"po-{n % 8}"
        add("unit.provisioned", at, order, serial=f"SN{n:08d}",
            detail={"site_id": f"cm-{n % 4}", "product_id": "sensor"})  # fmt: skip
        if n % 50 == 0:
            add("unit.refused", at, order, serial=f"SN{n:08d}", code="key_reused", detail={"site_id": f"cm-{n % 4}"})
        if n % 200 == 0:
            add("unit.revoked", at, order, serial=f"SN{n:08d}", detail={"product_id": "sensor"})
    return out


def timed(fn: Any, repeat: int = 3) -> float:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=1_000_000)
    args = parser.parse_args()
    ledger = entries(args.units)
    n = len(ledger)
    print(f"ledger: {n:,} entries ({args.units:,} units provisioned)")
    scopes = {
        "everything": RoyaltyScope(),
        "one site, one month": RoyaltyScope(
            site_id="cm-1", since=format_time(START + timedelta(days=31)), until=format_time(START + timedelta(days=59))
        ),
    }
    for name, scope in scopes.items():
        seconds = timed(lambda scope=scope: royalty_statement(ledger, scope).to_dict())
        totals = royalty_statement(ledger, scope).figures()["totals"]
        print(f"statement, {name}: {seconds:.2f} s median of 3, {n / seconds:,.0f} entries/s; due {totals}")

    seconds = timed(lambda: reconcile(ledger, Scope()).to_dict())
    print(f"for scale, the reconciliation of the same entries: {seconds:.2f} s, {n / seconds:,.0f} entries/s")

    now = datetime.now(UTC)
    root = profiles.self_signed_root(ec.generate_private_key(ec.SECP256R1()), "Bench", "Bench Root", now)
    key = ec.generate_private_key(ec.SECP256R1())
    signer = profiles.Issuer(licence_signer_certificate(root, key.public_key(), "Bench", "sensor", now), key)
    issuing_key = ec.generate_private_key(ec.SECP256R1())
    issuing = profiles.Issuer(
        profiles.intermediate_ca(root, issuing_key.public_key(), "Bench", "Issuing", now), issuing_key
    )
    device = profiles.idevid_certificate(issuing, ec.generate_private_key(ec.SECP256R1()).public_key(),
                                         Serial("SN1"), "Bench", "sensor", now)  # fmt: skip
    body = licence_body(licence_id="lic-1", organization="Bench", product_id="sensor", serial="SN1",
                        device_certificate=device, features=["a", "b"], issued_at=now, not_after=None)  # fmt: skip
    count = 2000
    sign_s = timed(lambda: [sign_licence(body, signer) for _ in range(count)], repeat=1)
    doc = sign_licence(body, signer)
    verify_s = timed(
        lambda: [verify_licence(doc, device_certificate=device, root=root.certificate) for _ in range(count)], repeat=1
    )
    print(f"licence signing: {count / sign_s:,.0f}/s; device-side verification: {count / verify_s:,.0f}/s (one core)")


if __name__ == "__main__":
    main()
