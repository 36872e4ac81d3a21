"""``fabguard compliance export``: the CRA evidence pack, signed and checkpointed, for an auditor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from fabguard.cli.common import command, console, opened
from fabguard.cli.remote import connected, remote
from fabguard.domain.errors import Conflict
from fabguard.service.compliance import evidence_pack

compliance_app = typer.Typer(help="CRA evidence: the signed, checkpointed compliance pack.", no_args_is_help=True)


@command(compliance_app, "export")
def export(
    out: Annotated[Path, typer.Argument(help="A new or empty directory to write the pack into")],
    allow_incomplete: Annotated[
        bool,
        typer.Option(
            "--allow-incomplete",
            help="Export even if a product has no support period or vulnerability contact; the signed index "
            "records which, and 'fabguard audit verify' reports it",
        ),
    ] = False,
) -> None:
    """Write the CRA evidence pack: certificate inventory, history, CA facts, SBOMs, products, Annex I index.

    The pack is a directory; manifest.json (SHA-256 of every file, bound to a signed checkpoint) is
    signed with the ledger key. Check it offline with 'fabguard audit verify DIR --key ledger.pub'.
    A product without its CRA facts (set them with 'fabguard product compliance') is refused, naming
    what it lacks, unless --allow-incomplete.
    """
    if remote():  # the server makes the pack (POST /api/v1/compliance/pack) and sends it as one archive
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise Conflict(f"{out} exists and is not an empty directory", code="pack_target_exists")
        with connected() as api:
            headers = api.unpack("/api/v1/compliance/pack", out, allow_incomplete=allow_incomplete or None)
        pack: dict[str, Any] = json.loads(headers["X-FabGuard-Summary"])
    else:
        with opened() as inst:
            made = evidence_pack.export_pack(inst, out, allow_incomplete=allow_incomplete)
        pack = {k: v for k, v in vars(made).items() if k != "directory"}
    for pid, fields in sorted(pack["incomplete"].items()):
        console.print(f"[yellow]incomplete:[/] product {pid} has no {', '.join(fields)} (recorded in index.json)")
    console.print(
        f"Compliance pack written to {out}: {pack['certificates']} certificates, {pack['history']} history entries, "
        f"{pack['cas']} CAs, {pack['releases']} firmware releases, at checkpoint size {pack['tree_size']}"
    )
