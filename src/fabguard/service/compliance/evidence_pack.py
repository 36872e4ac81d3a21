"""The CRA evidence pack: one signed, checkpointed directory an auditor verifies offline.

``export_pack`` signs a checkpoint, then writes what the ledger and the registry say at that tree size:
the device certificate inventory (status from the ledger entries the checkpoint covers, so it agrees
with the history whatever happens meanwhile), the issuance and revocation history with an inclusion
proof per entry, the CA hierarchy and where each CA key lives (never a key, a passphrase or a PIN), the
products' support period and vulnerability contact, each firmware release's SBOM (schema-validated)
and signed manifest, an index from each part to the CRA Annex I requirements it evidences, and
``manifest.json`` (SHA-256 of every file, the checkpoint's size and root) signed by the ledger key.
:mod:`fabguard.ledger.pack` verifies it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from sqlalchemy import select

from fabguard.domain.errors import Conflict
from fabguard.domain.filenames import path_inside, safe_file_name
from fabguard.firmware.sbom import validate_sbom
from fabguard.ledger import merkle
from fabguard.ledger.entry import decode_entry, format_time
from fabguard.ledger.keychain import KEYCHAIN_FILE
from fabguard.ledger.pack import (
    HISTORY_KINDS,
    IDENTITY_FIELDS,
    MANIFEST,
    MANIFEST_SIGNATURE,
    PACK_FORMAT,
    file_digest,
)
from fabguard.service.compliance.index import missing_facts, pack_index
from fabguard.service.core.ca_registry import EXTERNAL_KEY, OFFLINE_ROOT_KEY
from fabguard.service.core.instance import Instance
from fabguard.service.firmware import release_lifecycle, sealing_keys
from fabguard.service.ledger import ledger_keys, merkle_log
from fabguard.store.models import CertificateAuthority, Event, LedgerNode, Product, Unit

_RETRIES = 3  # a unit re-enrolled between the checkpoint and the read of the units: sign a newer one


@dataclass(frozen=True)
class PackSummary:
    directory: Path
    tree_size: int
    certificates: int
    history: int
    releases: int
    cas: int
    incomplete: dict[str, list[str]]  # product -> the CRA facts it lacks (only with allow_incomplete)


def _write(out: Path, name: str, data: bytes) -> None:
    """Write one part of the pack; a name that would leave the pack's directory is refused, never followed."""
    path = path_inside(out, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=True) + "\n").encode()


def _key_algorithm(cert: x509.Certificate) -> str:
    public = cert.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        return f"EC {public.curve.name}"
    if isinstance(public, rsa.RSAPublicKey):
        return f"RSA {public.key_size}"
    if isinstance(public, ed25519.Ed25519PublicKey):
        return "Ed25519"
    return type(public).__name__


def _key_protection(inst: Instance, key_ref: str) -> dict[str, object]:
    """Where a key lives, as facts an auditor can read: the backend, never the key, passphrase or PIN."""
    backend, _, name = key_ref.partition(":")
    if key_ref == OFFLINE_ROOT_KEY:
        return {
            "kind": "offline",
            "location": None,
            "note": "an offline root: its key exists only at the key ceremony, on an air-gapped machine "
            "(an HSM or an encrypted file), never on this server (docs/ceremony.md)",
        }
    if key_ref.startswith(EXTERNAL_KEY):  # a site agent's CA (or, at an agent, the root and station CA)
        return {
            "kind": "elsewhere",
            "location": None,
            "note": "this instance holds the certificate only: the key is where the CA runs (a site agent's "
            "issuing key stays at its site, in an encrypted file or its token)",
        }
    if backend == "pkcs11":
        return {
            "kind": "hsm",
            "interface": "PKCS#11",
            "token": inst.config.pkcs11_token,
            "label": name,
            "extractable": False,
            "sensitive": True,
        }
    held = inst.keys.path(name).is_file()
    return {
        "kind": "encrypted-file" if held else "not-held",
        "format": "PKCS#8 PEM, passphrase-encrypted (the passphrase comes from the environment, never stored)",
        "location": f"keys/{name}.key.pem" if held else None,
        "note": None if held else "this instance does not hold the key (for example an offline root)",
    }


def _history(inst: Instance, size: int) -> tuple[list[dict[str, Any]], list[bytes]]:
    """The history's entries with their inclusion proofs, in one read; the proofs share most of their
    nodes, so each node is read once."""
    lines, entries = [], []
    with inst.db.read() as s:
        nodes: dict[tuple[int, int], bytes] = {}

        def get(level: int, idx: int) -> bytes:
            if (level, idx) not in nodes:
                q = select(LedgerNode.hash).where(LedgerNode.level == level, LedgerNode.idx == idx)
                nodes[(level, idx)] = bytes(s.execute(q).scalar_one())
            return nodes[(level, idx)]

        rows = s.execute(
            select(Event.seq, Event.entry).where(Event.seq <= size, Event.kind.in_(HISTORY_KINDS)).order_by(Event.seq)
        ).all()
        for seq, entry in rows:
            proof = merkle.inclusion_proof(get, seq - 1, size)
            lines.append(
                {
                    "index": seq - 1,
                    "entry": bytes(entry).decode(),
                    "proof": [base64.b64encode(h).decode() for h in proof],
                }
            )
            entries.append(bytes(entry))
    return lines, entries


def _inventory(
    units: list[Unit], entries: list[bytes], now_text: str
) -> tuple[list[dict[str, object]], dict[str, str]] | None:
    """Rows of the inventory with each status from the history; None when a unit's current certificate
    is newer than the checkpoint (re-enrolled meanwhile)."""
    issued: set[str] = set()
    revoked: dict[tuple[str, str], tuple[str, str]] = {}
    identities: dict[tuple[str, str], dict[str, object]] = {}
    for raw in entries:
        e = decode_entry(raw)
        detail = e.get("detail") or {}
        if e["kind"] == "identity.allocated":  # the unit's identities, as the ledger recorded them
            key = (str(detail.get("product_id")), str(e["serial"]))
            identities[key] = {k: detail.get(k) for k in IDENTITY_FIELDS}
        elif e["kind"] in ("unit.provisioned", "unit.reenrolled") and "cert_sha256" in detail:
            issued.add(str(detail["cert_sha256"]))
        elif e["kind"] == "unit.revoked":
            revoked[(str(e["serial"]), str(detail.get("cert_serial")))] = (str(detail.get("reason")), str(e["at"]))
    rows: list[dict[str, object]] = []
    pems: dict[str, str] = {}
    for u in units:
        if u.cert_sha256 not in issued:
            return None
        cert = x509.load_pem_x509_certificate(u.certificate_pem.encode())
        not_after = format_time(cert.not_valid_after_utc)
        reason, revoked_at = revoked.get((u.serial, u.cert_serial), (None, None))
        status = "revoked" if reason else ("expired" if not_after < now_text else "active")
        # Named by the certificate's SHA-256, never the serial: a serial is the CM's input (it may hold
        # '/' or '..') and is unique only within a product.
        path = f"certificates/{u.cert_sha256}.pem"
        rows.append(
            {
                "serial": u.serial,
                "product_id": u.product_id,
                "order_id": u.order_id,
                "issuing_ca": u.issuing_ca,
                "cert_serial": u.cert_serial,
                "cert_sha256": u.cert_sha256,
                "not_before": format_time(cert.not_valid_before_utc),
                "not_after": not_after,
                "status": status,
                "revocation_reason": reason,
                "revoked_at": revoked_at,
                "certificate": path,
                "identity": identities.get((u.product_id, u.serial)),
            }
        )
        pems[path] = u.certificate_pem
    return rows, pems


def _cas(inst: Instance) -> tuple[list[dict[str, object]], dict[str, str]]:
    with inst.db.read() as s:
        rows = list(s.execute(select(CertificateAuthority).order_by(CertificateAuthority.name)).scalars())
    cas, pems = [], {}
    for row in rows:
        fact: dict[str, object] = {
            "name": row.name,
            "role": row.role,
            "state": row.state,
            "site_id": row.site_id,
            "product_id": row.product_id,
            "revocation_reason": row.revocation_reason,
            "key_protection": _key_protection(inst, row.key_ref),
            "certificate": None,
        }
        if row.certificate_pem:
            cert = x509.load_pem_x509_certificate(row.certificate_pem.encode())
            path = f"ca/{safe_file_name(row.name)}.pem"
            fact.update(
                certificate=path,
                subject=cert.subject.rfc4514_string(),
                issuer=cert.issuer.rfc4514_string(),
                key_algorithm=_key_algorithm(cert),
                not_before=format_time(cert.not_valid_before_utc),
                not_after=format_time(cert.not_valid_after_utc),
                cert_serial=format(cert.serial_number, "x"),
            )
            pems[path] = row.certificate_pem
        cas.append(fact)
    return cas, pems


def _products_and_releases(inst: Instance) -> tuple[list[dict[str, object]], list[dict[str, object]], dict[str, bytes]]:
    with inst.db.read() as s:
        products = list(s.execute(select(Product).order_by(Product.id)).scalars())
    releases: list[dict[str, object]] = []
    sboms: dict[str, bytes] = {}
    for r in release_lifecycle.list_releases(inst):
        sbom = release_lifecycle.release_sbom(inst, r.id)
        validate_sbom(sbom)
        path = f"firmware/{safe_file_name(r.id)}.cdx.json"
        # The SBOM's canonical bytes, as the signed release manifest's sbom_sha256 names them.
        sboms[path] = json.dumps(sbom, sort_keys=True, separators=(",", ":")).encode()
        releases.append(
            {
                "release_id": r.id,
                "product_id": r.product_id,
                "version": r.version,
                "state": r.state,
                "sha256": r.sha256,
                "uploaded_at": format_time(r.uploaded_at),
                "approved_at": format_time(r.approved_at) if r.approved_at else None,
                "sbom": path,
                "manifest": r.manifest,
                "manifest_signature": base64.b64encode(r.manifest_signature).decode(),
                "signer": r.signer,
            }
        )
    product_rows: list[dict[str, object]] = [
        {
            "id": p.id,
            "name": p.name,
            "support_until": p.support_until.isoformat() if p.support_until else None,
            "vulnerability_contact": p.vulnerability_contact,
            "releases": [x["release_id"] for x in releases if x["product_id"] == p.id],
        }
        for p in products
    ]
    return product_rows, releases, sboms


def _refuse_incomplete(incomplete: dict[str, list[str]]) -> None:
    named = "; ".join(f"{pid} ({', '.join(fields)})" for pid, fields in sorted(incomplete.items()))
    raise Conflict(
        f"products without their CRA facts make no evidence: {named}. Set them with 'fabguard product compliance "
        "ID --support-until YYYY-MM-DD --contact ADDRESS', or export with --allow-incomplete (the pack's signed "
        "index then records which products lack what)",
        code="product_compliance_incomplete",
    )


def export_pack(inst: Instance, out: Path, *, allow_incomplete: bool = False) -> PackSummary:
    """Write the CRA evidence pack into ``out`` (new or empty): see the module's docstring. A product without
    its support period or vulnerability contact is refused (``product_compliance_incomplete``) before anything
    is signed or written, unless ``allow_incomplete``, which ``index.json`` then records."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise Conflict(f"{out} exists and is not an empty directory", code="pack_target_exists")
    products, releases, sboms = _products_and_releases(inst)
    incomplete = missing_facts(products)
    if incomplete and not allow_incomplete:
        _refuse_incomplete(incomplete)
    now = inst.clock().astimezone(UTC)
    now_text = format_time(now)
    for _ in range(_RETRIES):
        cp = merkle_log.make_checkpoint(inst)
        lines, entries = _history(inst, cp.size)
        with inst.db.read() as s:
            units = list(s.execute(select(Unit).order_by(Unit.serial, Unit.order_id)).scalars())
        inventory = _inventory(units, entries, now_text)
        if inventory is not None:
            break
    else:
        raise Conflict("units kept being re-enrolled while the pack was made: try again", code="conflict")
    rows, unit_pems = inventory
    cas, ca_pems = _cas(inst)
    fw_key = sealing_keys.public_key_pem(inst) if releases else None

    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {
        "checkpoint.txt": cp.note.encode(),
        "ledger.pub": (merkle_log.public_verifier_key(inst) + "\n").encode(),
        **_key_chain(inst),
        "certificates/inventory.json": _json(rows),
        "history.jsonl": b"".join(json.dumps(x, sort_keys=True).encode() + b"\n" for x in lines),
        "ca/hierarchy.json": _json(cas),
        "products.json": _json(products),
        "firmware/releases.json": _json(releases),
        "index.json": _json(pack_index(incomplete)),
        "README.txt": README.encode(),
    }
    if fw_key:
        files["firmware/signing-key.pem"] = fw_key.encode()
    files.update({p: pem.encode() for p, pem in {**unit_pems, **ca_pems}.items()})
    files.update(sboms)
    for name, data in files.items():
        _write(out, name, data)
    manifest = {
        "format": PACK_FORMAT,
        "organization": inst.config.organization,
        "generated_at": now_text,
        "checkpoint": {"size": cp.size, "root": base64.b64encode(cp.root).decode()},
        "files": {name: file_digest(data) for name, data in sorted(files.items())},
    }
    manifest_bytes = _json(manifest)
    _write(out, MANIFEST, manifest_bytes)
    signature = merkle_log.ledger_signing_key(inst).sign(manifest_bytes)
    _write(out, MANIFEST_SIGNATURE, base64.b64encode(signature) + b"\n")
    return PackSummary(out, cp.size, len(rows), len(lines), len(releases), len(cas), incomplete)


README = """FabGuard CRA evidence pack (format fabguard-compliance-pack/1).

Verify it offline, with the ledger verifier key you kept:
    fabguard audit verify THIS_DIRECTORY --key YOUR_COPY_OF_ledger.pub

manifest.json      SHA-256 of every other file, the checkpoint's tree size and root; manifest.sig is the
                   ledger key's Ed25519 signature over manifest.json's bytes (base64)
checkpoint.txt     the signed ledger checkpoint (C2SP signed note) the pack was made at
index.json         which CRA Annex I requirement (Regulation (EU) 2024/2847) each part evidences
certificates/      inventory.json (every device certificate: active, revoked with reason, or expired)
                   and each certificate (PEM)
history.jsonl      issuance, re-enrolment, revocation, CA and firmware entries of the ledger, each with
                   its RFC 9162 inclusion proof against the checkpoint
ca/                hierarchy.json (each CA: subject, key algorithm, validity, where its key lives) and
                   each CA certificate; no key, passphrase or PIN is ever in the pack
products.json      each product's support period end and vulnerability contact (a product without them is
                   exported only with --allow-incomplete, which index.json records under "incomplete")
firmware/          releases.json (signed release manifests), signing-key.pem (the key that signs
                   them, public) and each release's CycloneDX SBOM (*.cdx.json)
"""


def _key_chain(inst: Instance) -> dict[str, bytes]:
    """The ledger's key chain, once it rotated its key: how a verifier's kept key reaches the one that signed."""
    if len(ledger_keys.chain(inst)) < 2:
        return {}
    return {KEYCHAIN_FILE: _json(ledger_keys.document(inst))}
