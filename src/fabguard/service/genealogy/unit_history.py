"""A unit's genealogy: every test record with its steps and measurements, each provisioning decision
and refusal, its certificates (current and superseded), firmware releases, field checks, licences, the
fixture or site agent's lease that made it, and each ledger entry naming it with its inclusion proof
(against the newest signed checkpoint when that covers it, else the current tree).

With a site (an operator's view) it keeps only what happened at that site: its orders' units, the
records its fixtures uploaded, the events of its orders and fixtures; no field checks or licences.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from fabguard.domain.errors import InvalidRequest, NotFound
from fabguard.domain.testrecord import stored_rows
from fabguard.ledger import merkle
from fabguard.service.core.instance import Instance
from fabguard.service.ledger import merkle_log
from fabguard.service.royalties import licences
from fabguard.store import identities as identity_rows
from fabguard.store import unit_history as store
from fabguard.store.models import Event, TestRecordRow, Unit

SEARCH_LIMIT = 50
SEARCH_CHARS = 128  # a SHA-256 fingerprint with colons is 95 characters, openssl's whole line 115
_SEPARATORS = re.compile(r"[\s:.-]")
_HEX = re.compile(r"[0-9a-f]{1,64}")
RECORDS_SHOWN = 100
EVENTS_SHOWN = 500
FIELD_CHECKS_SHOWN = 200
AGENT_PREFIX = "agent:"


def search(inst: Instance, query: str, *, site_id: str | None = None, limit: int = SEARCH_LIMIT) -> list[str]:
    """Serials that start with ``query`` (tested or provisioned), and those whose MAC address, certificate
    serial or SHA-256, or key fingerprint ``query`` is (hex, any case, with or without ``:``, ``-``, ``.`` or
    spaces: as a label, ``openssl x509 -serial`` or ``-fingerprint -sha256`` print them, their ``name=`` too);
    at ``site_id`` only, for an operator."""
    query = query.strip()
    if not query or len(query) > SEARCH_CHARS or not query.isprintable():
        raise InvalidRequest(
            f"search for 1-{SEARCH_CHARS} printable characters: a serial or its start, a MAC address, a "
            "certificate's serial number or SHA-256 fingerprint, or a key's fingerprint",
            code="invalid_serial_query",
        )
    # openssl's own line ("serial=...", "sha256 Fingerprint=...") as pasted: the value after its "=".
    digits = _SEPARATORS.sub("", query.rsplit("=", 1)[-1]).lower()
    with inst.db.read() as s:
        # An identifier names its unit exactly: those serials first, then the serials starting with the query.
        named = store.serials_by_identifier(s, digits, site_id) if _HEX.fullmatch(digits) else []
        starting = store.serials_starting(s, query, limit, site_id) if len(query) <= 64 else []
    return [*named, *(x for x in starting if x not in named)][:limit]


def _record(r: TestRecordRow) -> dict[str, Any]:
    try:
        phases, measurements = stored_rows(json.loads(r.record_json))
    except (ValueError, KeyError, TypeError, AttributeError):
        phases, measurements = [], []
    return {
        "id": r.id,
        "fixture_id": r.fixture_id,
        "site_id": r.site_id,
        "declared_station_id": r.declared_station_id,
        "outcome": r.outcome,
        "received_at": r.received_at.isoformat(),
        "duration_ms": r.end_ms - r.start_ms,
        "steps": [
            {
                "phase": name,
                "outcome": outcome,
                "measurements": [
                    {"name": m[1], "outcome": m[2], "value": m[3], "lower": m[4], "upper": m[5]}
                    for m in measurements
                    if m[0] == name
                ],
            }
            for name, outcome in phases
        ],
    }


def _unit(u: Unit, site: str, made_by: dict[str, str]) -> dict[str, Any]:
    return {
        "product_id": u.product_id,
        "order_id": u.order_id,
        "site_id": site,
        "fixture_id": u.fixture_id,
        "made_by": made_by,
        "issued_at": u.issued_at.isoformat(),
        "issuing_ca": u.issuing_ca,
        "certificate": {
            "serial": u.cert_serial,
            "sha256": u.cert_sha256,
            "pem": u.certificate_pem,
            "revoked_at": u.revoked_at.isoformat() if u.revoked_at else None,
            "revocation_reason": u.revocation_reason,
        },
        "key_fingerprint": u.key_fingerprint,
        "attestation": json.loads(u.attestation) if u.attestation else None,
    }


def _made_by(u: Unit, events: list[Event]) -> dict[str, str]:
    """The fixture or site agent (its quota lease) whose request made ``u``."""
    for e in events:
        if e.kind == "unit.provisioned" and e.order_id == u.order_id:
            if e.actor and e.actor.startswith(AGENT_PREFIX):
                return {"kind": "site_agent", "lease_id": e.actor[len(AGENT_PREFIX) :], "fixture_id": u.fixture_id}
            break
    return {"kind": "fixture", "fixture_id": u.fixture_id}


def _area(kind: str) -> str:
    """What an event is about on the unit's page: a decision, a refusal, firmware, field, licence, …"""
    if kind.endswith(".refused"):
        return "refusal"
    head = kind.split(".", 1)[0]
    return {
        "unit": "provisioning",
        "test": "test",
        "firmware": "firmware",
        "field": "field",
        "licence": "licence",
        "agent": "site_agent",
    }.get(head, "other")


def _proofs(inst: Instance, wanted: list[tuple[int, int | None]]) -> list[dict[str, object]]:
    """``merkle_log.inclusion`` of each (index, size or None: the current tree), with every Merkle node
    they need read at once: which nodes a proof and a root read depends on the index and size alone, so
    a first pass with placeholder hashes names them, one read fetches them, a second pass computes. A
    unit's page then costs a few statements however many entries it has and however big the ledger is,
    where reading node by node cost about 4 log2(n) round trips per entry."""
    keys: set[tuple[int, int]] = set()

    def note(level: int, idx: int) -> bytes:
        keys.add((level, idx))
        return bytes(32)

    with inst.db.read() as s:
        current = store.tree_size(s)
        sized = [(index, current if size is None else size) for index, size in wanted]
        for index, n in sized:
            if not 0 <= index < n:
                raise InvalidRequest(f"entry {index} is not in a tree of size {n}", code="invalid_index")
        for n in {n for _, n in sized}:
            merkle.root(note, n)
        for index, n in sized:
            merkle.inclusion_proof(note, index, n)
        nodes = store.ledger_nodes(s, keys)

    def get(level: int, idx: int) -> bytes:
        return nodes[(level, idx)]

    roots = {n: base64.b64encode(merkle.root(get, n)).decode() for n in {n for _, n in sized}}
    return [
        {
            "index": index,
            "tree_size": n,
            "root": roots[n],
            "proof": [base64.b64encode(h).decode() for h in merkle.inclusion_proof(get, index, n)],
        }
        for index, n in sized
    ]


def _entries(inst: Instance, events: list[Event]) -> tuple[list[dict[str, Any]], dict[str, object] | None]:
    """Each event as a ledger entry with its inclusion proof, and the checkpoint the proofs end at."""
    try:
        checkpoint = merkle_log.newest_checkpoint(inst)
    except NotFound:
        checkpoint = None
    size = checkpoint.size if checkpoint is not None else 0
    proofs = _proofs(inst, [(e.seq - 1, size if e.seq - 1 < size else None) for e in events])
    out = []
    for e, found in zip(events, proofs, strict=True):
        index = e.seq - 1
        covered = index < size
        entry = bytes(e.entry)
        proof = {
            "index": index,
            "tree_size": found["tree_size"],
            "root": found["root"],
            "entry": entry.decode(),
            "leaf_hash": base64.b64encode(merkle.leaf_hash(entry)).decode(),
            "proof": found["proof"],
        }
        out.append(
            {
                "seq": e.seq,
                "index": index,
                "at": e.at.isoformat(),
                "kind": e.kind,
                "area": _area(e.kind),
                "code": e.code,
                "actor": e.actor,
                "order_id": e.order_id,
                "fixture_id": e.fixture_id,
                "detail": json.loads(e.detail),
                "inclusion": {**proof, "checkpointed": covered},
            }
        )
    return out, checkpoint.to_dict() if checkpoint else None


def _visible(e: Event, orders: set[str], fixtures: set[str]) -> bool:
    return (e.order_id in orders) or (e.fixture_id in fixtures)


def genealogy(inst: Instance, serial: str, *, site_id: str | None = None) -> dict[str, Any]:
    """Everything known about ``serial`` (``unit_not_found`` when nothing is, or nothing at ``site_id``)."""
    if not serial or len(serial) > 64:
        raise NotFound(f"no unit {serial[:64]!r}", code="unit_not_found")
    with inst.db.read() as s:
        units = store.units(s, serial)
        records = store.test_records(s, serial, RECORDS_SHOWN)
        events = store.events(s, serial, EVENTS_SHOWN)
        superseded = store.superseded(s, serial)
        checks = store.field_checks(s, serial, FIELD_CHECKS_SHOWN) if site_id is None else []
        # Drawn for it under any product, provisioned or not yet (a MAC on a label finds the serial before then).
        drawn = identity_rows.allocations(s, [(p, serial) for p in store.product_ids(s)])
        if site_id is not None:
            orders, fixtures = store.site_orders_and_fixtures(s, site_id)
            units = [(u, site) for u, site in units if site == site_id]
            records = [r for r in records if r.site_id == site_id]
            events = [e for e in events if _visible(e, orders, fixtures)]
            drawn = {key: row for key, row in drawn.items() if row.order_id in orders}
    if not (units or records or events or checks):
        raise NotFound(f"no unit {serial!r}", code="unit_not_found")
    entries, checkpoint = _entries(inst, events)
    return {
        "serial": serial,
        "site_id": site_id,
        "units": [_unit(u, site, _made_by(u, events)) for u, site in units],
        "superseded_certificates": [
            {
                "serial": c.cert_serial,
                "sha256": c.cert_sha256,
                "issuing_ca": c.issuing_ca,
                "product_id": c.product_id,
                "superseded_at": c.superseded_at.isoformat(),
            }
            for c in superseded
            if site_id is None or any(u.product_id == c.product_id for u, _ in units)
        ],
        "test_records": [_record(r) for r in records],
        "decisions": [e for e in entries if e["area"] in ("provisioning", "refusal")],
        "firmware": [e for e in entries if e["area"] == "firmware"],
        "field_checks": [
            {
                "at": c.at.isoformat(),
                "seq": c.seq,
                "genuine": c.genuine,
                "reason": c.reason,
                "clone": c.clone,
                "place": c.place,
                "cert_sha256": c.cert_sha256,
            }
            for c in checks
        ],
        "licences": licences.licences_of(inst, serial) if site_id is None else [],
        # The identities drawn for it from its product's pools (docs/identities.md), none of the label's secrets.
        "identities": [
            {"product_id": product, "order_id": row.order_id, **(identity_rows.public_identity(row) or {})}
            for (product, _), row in sorted(drawn.items())
        ],
        "ledger": {"entries": entries, "checkpoint": checkpoint, "verifier_key": merkle_log.public_verifier_key(inst)},
        "generated_at": inst.clock().isoformat(),
    }
