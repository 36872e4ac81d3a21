"""``fabguard audit ...``: what an auditor runs offline, with nothing but the keys they kept: verify a ledger
export or a CRA pack, make a signed reconciliation report, check a report's signature."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from fabguard.cli.common import Instance, command, console, fail, parse_time
from fabguard.cli.remote import Remote, through
from fabguard.domain.filenames import path_inside
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
from fabguard.service.ledger import reports

audit_app = typer.Typer(help="Offline verification for auditors (no server, no database).", no_args_is_help=True)


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
    keys: Annotated[
        Path | None,
        typer.Option(
            help="The ledger's key chain (GET /api/v1/ledger/keys) if it rotated its key since you kept yours"
        ),
    ] = None,
) -> None:
    """Check that a report or royalty statement was signed by the ledger key and not altered since."""
    verifier = _verifier_key(key)
    try:
        chain = json.loads(keys.read_text(encoding="utf-8")) if keys else None
    except (OSError, ValueError) as exc:
        fail(f"cannot read the key chain {keys}: {exc}")
    try:
        verify_report(path, verifier, chain)
    except AuditFailure as exc:
        fail(f"verification FAILED: {exc}", code=1)
    console.print(f"[green]verified[/]: {path.name} is signed by the ledger key")
