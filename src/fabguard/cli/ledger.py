"""``fabguard ledger ...`` (the server's side) and ``fabguard audit verify`` (the auditor's, offline)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from fabguard.cli.common import Instance, JsonOption, actor, command, console, fail, opened, parse_time, print_json
from fabguard.cli.remote import Remote, connected, remote, through
from fabguard.domain.errors import Conflict
from fabguard.domain.filenames import path_inside
from fabguard.domain.values import SiteId
from fabguard.firmware.sbom import validate_sbom
from fabguard.ledger.checkpoint import CheckpointError, parse_verifier_key
from fabguard.ledger.cosignature import (
    CosignatureError,
    CosignerKey,
    distinct_keys,
    parse_cosigner_key,
    require_export_cosignatures,
)
from fabguard.ledger.pack import is_compliance_pack, verify_pack
from fabguard.ledger.reconcile import Scope
from fabguard.ledger.verify import AuditFailure, verify_export, verify_report
from fabguard.service.ledger import merkle_log, reports, witness

ledger_app = typer.Typer(help="The tamper-evident ledger: checkpoints, proofs, export.", no_args_is_help=True)
audit_app = typer.Typer(help="Offline verification for auditors (no server, no database).", no_args_is_help=True)


@command(ledger_app, "checkpoint")
def checkpoint(out: Annotated[Path | None, typer.Option(help="Also write the signed note here")] = None) -> None:
    """Sign the current tree head now and print the checkpoint (C2SP signed note)."""
    note: str = through(
        lambda inst: merkle_log.make_checkpoint(inst).note,
        lambda api: api.call("POST", "/api/v1/ledger/checkpoint", params={"format": "note"}).text,
    )
    console.out(note, end="")
    if out:
        out.write_text(note)


@command(ledger_app, "key")
def key() -> None:
    """Print the verifier key an auditor keeps (name+id+Ed25519 key)."""
    console.out(through(merkle_log.public_verifier_key, lambda api: str(api.get("/api/v1/ledger/key")["verifier_key"])))


@command(ledger_app, "checkpoints")
def checkpoints(
    limit: Annotated[int, typer.Option(help="How many, newest first")] = 20, as_json: JsonOption = False
) -> None:
    """The checkpoints signed so far, newest first."""
    rows: list[dict[str, Any]] = through(
        lambda inst: [c.to_dict() for c in merkle_log.checkpoints(inst, limit=limit)],
        lambda api: api.get("/api/v1/ledger/checkpoints", limit=limit),
    )
    if as_json:
        print_json(rows)
        return
    table = Table("tree size", "root (base64)")
    for cp in rows:
        table.add_row(str(cp["size"]), str(cp["root"]))
    console.print(table)


@command(ledger_app, "prove")
def prove(
    index: Annotated[int | None, typer.Option(help="Ledger entry index")] = None,
    serial: Annotated[str | None, typer.Option(help="A provisioned unit's serial")] = None,
    cert: Annotated[str | None, typer.Option(help="A device certificate's serial (hex) or SHA-256")] = None,
    size: Annotated[int | None, typer.Option(help="Tree size to prove against (default: current)")] = None,
) -> None:
    """Inclusion proof of one entry (JSON), by index, unit serial or certificate."""
    if index is None and serial is None and cert is None:
        fail("name an entry: --index, --serial or --cert")

    def local(inst: Instance) -> dict[str, Any]:
        at = index if index is not None else merkle_log.index_of_unit(inst, serial=serial, cert=cert)
        return merkle_log.inclusion(inst, at, size)

    query = {"index": index, "serial": serial, "cert": cert, "size": size}
    print_json(through(local, lambda api: api.get("/api/v1/ledger/proof/inclusion", **query)))


@command(ledger_app, "consistency")
def consistency(
    first: Annotated[int, typer.Argument(help="The older tree size")],
    second: Annotated[int | None, typer.Argument(help="The newer tree size (default: current)")] = None,
) -> None:
    """Consistency proof between two tree sizes (JSON)."""
    print_json(
        through(
            lambda inst: merkle_log.consistency(inst, first, second),
            lambda api: api.get("/api/v1/ledger/proof/consistency", first=first, second=second),
        )
    )


@command(ledger_app, "export")
def export(out: Annotated[Path, typer.Argument(help="Directory to write")]) -> None:
    """Write entries, checkpoints, the verifier key and certificates for offline audit."""
    if remote():
        with connected() as api:
            manifest = _export_from(api, out)
    else:
        with opened() as inst:
            manifest = merkle_log.export(inst, out)
    console.print(
        f"Exported {manifest['entries']} entries, {manifest['checkpoints']} checkpoints and "
        f"{manifest['certificates']} certificates to {out}"
    )


def _export_from(api: Remote, out: Path) -> dict[str, Any]:
    """The server's export (``POST /api/v1/ledger/export``, a .tar.gz) unpacked into ``out``, new or empty."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise Conflict(f"{out} exists and is not an empty directory", code="export_target_exists")
    api.unpack("/api/v1/ledger/export", out)
    manifest: dict[str, Any] = json.loads(path_inside(out, "manifest.json").read_text())
    return manifest


@command(ledger_app, "witness-add")
def witness_add(
    site: Annotated[str, typer.Option(help="The CM site whose witness this is")],
    key: Annotated[str, typer.Option(help="Its cosigner key (fabguard witness key), or a file holding it")],
) -> None:
    """Register a site's witness key (a ledger event): its cosignatures are accepted from then on."""
    text = Path(key).read_text(encoding="utf-8").strip() if "+" not in key else key
    w = through(
        lambda inst: dict(
            witness.register_witness(inst, site_id=SiteId(site), verifier_key=text, actor=actor(inst)).__dict__
        ),
        lambda api: api.post("/api/v1/ledger/witnesses", {"site_id": site, "verifier_key": text}),
    )
    console.print(f"registered witness {w['name']} (key id {w['key_id']}) for site {w['site_id']}")


@command(ledger_app, "witnesses")
def witnesses(as_json: JsonOption = False) -> None:
    """The registered witnesses."""
    rows: list[dict[str, Any]] = through(
        lambda inst: [dict(w.__dict__) for w in witness.list_witnesses(inst)],
        lambda api: api.get("/api/v1/ledger/witnesses"),
    )
    if as_json:
        print_json(rows)
        return
    table = Table("name", "key id", "site", "registered")
    for w in rows:
        table.add_row(w["name"], w["key_id"], w["site_id"], str(w["registered_at"]))
    console.print(table)


@command(ledger_app, "cosign-request")
def cosign_request(
    old: Annotated[int, typer.Option(min=0, help="The size the witness last cosigned")],
    out: Annotated[Path, typer.Option(help="Write the add-checkpoint body here, for the witness")],
) -> None:
    """Offline hand-off: the newest checkpoint with its consistency proof from OLD (C2SP add-checkpoint body).

    Signs a checkpoint of the whole ledger first if it grew since the newest one (run locally, it is the
    operator's act; the API's GET hands out the newest stored checkpoint and signs nothing)."""
    with opened() as inst:
        out.write_text(witness.cosign_request(inst, old, sign_checkpoint=True))
    console.print(f"wrote {out}: give it to the witness ('fabguard witness cosign --request {out.name}')")


@command(ledger_app, "add-cosignature")
def add_cosignature(
    note: Annotated[Path, typer.Argument(help="The cosigned checkpoint the witness wrote (--out)")],
) -> None:
    """Offline hand-off: keep the cosignatures of a cosigned checkpoint, each verified with its witness key."""
    with opened() as inst:
        size, names = witness.add_cosigned_note(inst, witness.Sender(actor(inst)), note.read_text(encoding="utf-8"))
    console.print(f"kept the cosignatures of checkpoint {size} by {', '.join(names)}")


@command(ledger_app, "cosigned")
def cosigned(
    size: Annotated[int | None, typer.Option(help="Tree size (default: the newest cosigned checkpoint)")] = None,
) -> None:
    """Print a checkpoint with its witnesses' cosignatures under the log's signature."""
    with opened() as inst:
        cp = witness.cosigned_checkpoint(inst, size)
    console.out(str(cp["note"]), end="")


def _verifier_key(path: Path) -> str:
    """The verifier key the auditor kept, read from ``--key``: a key that is not one is the auditor's input
    error (exit 2), not a failed verification (exit 1)."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read the verifier key {path}: {exc}")
    try:
        parse_verifier_key(text)
    except CheckpointError as exc:
        fail(f"--key {path} is not a ledger verifier key: {exc.message} [{exc.code}]")
    return text


@command(audit_app, "verify")
def verify(
    directory: Annotated[
        Path, typer.Argument(help="An export made by 'fabguard ledger export', or a 'fabguard compliance export' pack")
    ],
    key: Annotated[
        Path | None,
        typer.Option(
            help="The ledger verifier key you kept ('fabguard ledger key'); required: the export's own proves nothing"
        ),
    ] = None,
    trusted_checkpoint: Annotated[
        list[Path] | None, typer.Option(help="A checkpoint you saved earlier (repeatable)")
    ] = None,
    root: Annotated[Path | None, typer.Option(help="The root CA certificate you trust (default: the export's)")] = None,
    witness: Annotated[
        list[str] | None,
        typer.Option(help="A witness's cosigner key (name+id+key), or a file holding one (repeatable)"),
    ] = None,
    min_cosignatures: Annotated[
        int, typer.Option(min=0, help="Require this many valid cosignatures from --witness keys on the checkpoint")
    ] = 0,
    cosigned_size: Annotated[
        int | None, typer.Option(help="The checkpoint (tree size) that must be cosigned (default: the newest)")
    ] = None,
) -> None:
    """Verify an export offline: recompute the tree, check signatures, history and certificates (and cosignatures).

    A CRA compliance pack ('fabguard compliance export') is recognised and checked instead: its signed
    manifest, every file's digest, the checkpoint, the history's proofs, each SBOM and the inventory.
    """
    if key is None:
        # Checked with the key it carries, an export (or a pack) proves only that it agrees with itself:
        # whoever made or changed it also made that key. So no key is no success ('field verify --export' agrees).
        fail(
            "--key is required: the verifier key you kept ('fabguard ledger key', taken from the server, not "
            "from the export); checked with its own ledger.pub an export proves nothing"
        )
    verifier = _verifier_key(key)
    if is_compliance_pack(directory):
        if min_cosignatures:
            fail("--min-cosignatures checks a ledger export, not a compliance pack: verify the export instead")
        if trusted_checkpoint or root or witness:
            console.print(
                "[yellow]note:[/] --trusted-checkpoint, --root and --witness check a ledger export, not a pack"
            )
        _verify_pack(directory, verifier)
        return
    witnesses = _witness_keys(witness or [], min_cosignatures)
    try:
        report = verify_export(
            directory,
            verifier=verifier,
            trusted_checkpoints=tuple(trusted_checkpoint or ()),
            root_ca=root,
        )
    except AuditFailure as exc:
        fail(f"verification FAILED: {exc}", code=1)
    except OSError as exc:
        fail(f"cannot read the export: {exc}")
    cosigned = None
    if min_cosignatures:
        try:
            cosigned = require_export_cosignatures(
                directory, witnesses, min_cosignatures, size=cosigned_size, now=int(time.time())
            )
        except CosignatureError as exc:
            fail(f"verification FAILED: {exc.message}", code=1)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {note}")
    console.print(
        f"[green]verified[/]: {report.entries} entries, {report.checkpoints_checked} signed checkpoints, "
        f"{report.trusted_checked} of your checkpoints, {report.certificates_checked} certificates"
    )
    if cosigned is not None:
        console.print(
            f"[green]cosigned[/]: checkpoint of size {cosigned.size} by {len(cosigned.cosigners)} of your witnesses"
        )


def _witness_keys(values: list[str], minimum: int) -> list[CosignerKey]:
    """The witness keys of ``--witness`` (the text, or a file holding it); a bad one is the auditor's input error."""
    keys = []
    for value in values:
        path = Path(value)
        text = path.read_text(encoding="utf-8").strip() if "+" not in value and path.is_file() else value
        try:
            keys.append(parse_cosigner_key(text))
        except CosignatureError as exc:
            fail(f"--witness {value} is not a cosigner key: {exc.message} [{exc.code}]")
    if minimum > distinct_keys(keys):
        fail(f"--min-cosignatures {minimum} needs at least {minimum} distinct --witness keys")
    return keys


def _verify_pack(directory: Path, verifier: str) -> None:
    try:
        report = verify_pack(directory, verifier=verifier, sbom_check=validate_sbom)
    except AuditFailure as exc:
        fail(f"verification FAILED: {exc}", code=1)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {note}")
    console.print(
        f"[green]verified[/] compliance pack: {report.files} files, {report.certificates} certificates, "
        f"{report.history} history entries in the tree of {report.tree_size}, {report.cas} CAs, "
        f"{report.sboms} SBOMs valid against the CycloneDX schema"
    )


@command(audit_app, "report")
def report(
    out: Annotated[Path, typer.Option(help="Directory for report.json, report.csv, report.pdf and report.pdf.sig")],
    order: Annotated[str | None, typer.Option(help="Only this order")] = None,
    site: Annotated[str | None, typer.Option(help="Only this site")] = None,
    since: Annotated[str | None, typer.Option(help="From this time (ISO 8601 with zone, or a date: 00:00 UTC)")] = None,
    until: Annotated[
        str | None, typer.Option(help="Until this time (ISO 8601 with zone, or a date: 00:00 UTC)")
    ] = None,
) -> None:
    """Reconcile ordered vs tested vs provisioned vs refused vs revoked, at a checkpoint of the whole ledger
    signed first (run locally, taking it is the operator's act; through --server, the API's GET signs none:
    the report stands at the newest stored checkpoint, 'fabguard ledger checkpoint' takes one)."""
    start, end = parse_time(since, "--since"), parse_time(until, "--until")

    def local(inst: Instance) -> tuple[dict[str, Any], str, bytes, str]:
        rep = reports.reconciliation_report(
            inst, order_id=order, site_id=site, since=start, until=end, sign_checkpoint=True
        )
        pdf = reports.to_pdf(rep)
        return rep.to_dict(), reports.to_csv(rep), pdf, reports.sign_bytes(inst, pdf)

    def on_server(api: Remote) -> tuple[dict[str, Any], str, bytes, str]:
        query = {
            "order_id": order,
            "site_id": site,
            "since": start and start.isoformat(),
            "until": end and end.isoformat(),
        }
        path = "/api/v1/reports/reconciliation"
        pdf = api.call("GET", path, params={**query, "format": "pdf"})
        csv = api.call("GET", path, params={**query, "format": "csv"}).text
        return api.get(path, **query), csv, pdf.content, pdf.headers["X-FabGuard-Signature"]

    signed, csv, pdf, sig = through(local, on_server)
    out.mkdir(parents=True, exist_ok=True)
    path_inside(out, "report.json").write_text(json.dumps(signed, indent=2, sort_keys=True) + "\n")
    path_inside(out, "report.csv").write_text(csv)
    path_inside(out, "report.pdf").write_bytes(pdf)
    path_inside(out, "report.pdf.sig").write_text(sig + "\n")
    body = signed["report"]
    f = body["figures"]
    table = Table(
        "ordered", "tested", "provisioned", "refused", "revoked", "remaining", title=Scope(**body["scope"]).describe()
    )
    table.add_row(
        str(f["ordered"]),
        str(f["tested"]["units"]),
        str(f["provisioned"]),
        str(f["refused_total"]),
        str(f["revoked"]),
        str(f["remaining"]),
    )
    console.print(table)
    console.print(f"Computed at checkpoint size {body['checkpoint']['size']}; written to {out}")


@command(audit_app, "verify-report")
def verify_report_cmd(
    path: Annotated[
        Path, typer.Argument(help="report.json or statement.json, or the .pdf with its .pdf.sig beside it")
    ],
    key: Annotated[Path, typer.Option(help="The ledger verifier key you kept")],
) -> None:
    """Check that a report or royalty statement was signed by the ledger key and not altered since."""
    verifier = _verifier_key(key)
    try:
        verify_report(path, verifier)
    except AuditFailure as exc:
        fail(f"verification FAILED: {exc}", code=1)
    console.print(f"[green]verified[/]: {path.name} is signed by the ledger key")
