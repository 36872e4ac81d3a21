"""``fabguard compliance export``: the CRA evidence pack, signed and checkpointed, for an auditor."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fabguard.cli.common import command, console, opened
from fabguard.service import compliance

compliance_app = typer.Typer(help="CRA evidence: the signed, checkpointed compliance pack.", no_args_is_help=True)


@command(compliance_app, "export")
def export(out: Annotated[Path, typer.Argument(help="A new or empty directory to write the pack into")]) -> None:
    """Write the CRA evidence pack: certificate inventory, history, CA facts, SBOMs, products, Annex I index.

    The pack is a directory; manifest.json (SHA-256 of every file, bound to a signed checkpoint) is
    signed with the ledger key. Check it offline with 'fabguard audit verify DIR --key ledger.pub'.
    """
    with opened() as inst:
        pack = compliance.export_pack(inst, out)
    console.print(
        f"Compliance pack written to {out}: {pack.certificates} certificates, {pack.history} history entries, "
        f"{pack.cas} CAs, {pack.releases} firmware releases, at checkpoint size {pack.tree_size}"
    )
