"""``fabguard compliance export``: the CRA evidence pack, signed and checkpointed, for an auditor."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fabguard.cli.common import command, console, opened
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
    with opened() as inst:
        pack = evidence_pack.export_pack(inst, out, allow_incomplete=allow_incomplete)
    for pid, fields in sorted(pack.incomplete.items()):
        console.print(f"[yellow]incomplete:[/] product {pid} has no {', '.join(fields)} (recorded in index.json)")
    console.print(
        f"Compliance pack written to {out}: {pack.certificates} certificates, {pack.history} history entries, "
        f"{pack.cas} CAs, {pack.releases} firmware releases, at checkpoint size {pack.tree_size}"
    )
