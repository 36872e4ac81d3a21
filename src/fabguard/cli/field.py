"""``fabguard field ...``: genuineness checks of devices in the field, on this instance or from an export."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from fabguard.cli.common import actor, command, console, err_console, fail, opened, print_json
from fabguard.domain.field import challenge_message, parse_nonce, parse_source
from fabguard.ledger.verify import AuditFailure, verify_export
from fabguard.pki.field import parse_chain, parse_signature
from fabguard.pki.field_offline import load_export, verify_offline
from fabguard.service.field import genuineness

field_app = typer.Typer(
    help=(
        "Is this device one of ours? A device signs a challenge (the context bytes, then the nonce) with "
        "its key; FabGuard checks its certificate chain, its unit record and the signature. Exit 0: "
        "genuine; 1: not genuine (the reason is printed); 2: bad input."
    ),
    no_args_is_help=True,
)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {what} {path}: {exc.strerror or exc}")


def _signature_text(path: Path) -> str:
    """The signature file as base64 text: it may hold base64 already, or the raw DER/Ed25519 bytes."""
    raw = _read(path, "the signature")
    try:
        text = raw.decode("ascii").strip()
        base64.b64decode(text, validate=True)
        return text
    except (UnicodeDecodeError, binascii.Error):
        return base64.b64encode(raw).decode()


@command(field_app, "challenge")
def challenge() -> None:
    """Make a challenge on this instance (valid 5 minutes, single use) and print it as JSON."""
    with opened() as inst:
        print_json(genuineness.issue_challenge(inst, actor=actor(inst)))


@command(field_app, "message")
def message(
    nonce: Annotated[str, typer.Option(help="The challenge nonce (64 hex digits)")],
    out: Annotated[Path, typer.Option(help="Write the bytes to sign here")],
) -> None:
    """Write the exact bytes a device signs for NONCE (e.g. for 'openssl dgst -sha256 -sign KEY')."""
    out.write_bytes(challenge_message(parse_nonce(nonce)))
    console.print(f"wrote {out}")


@command(field_app, "verify")
def verify(
    cert: Annotated[Path, typer.Option(help="The device's certificate chain, PEM, the device certificate first")],
    signature: Annotated[Path, typer.Option(help="A file with the device's signature (raw, or base64 text)")],
    nonce: Annotated[str, typer.Option(help="The challenge nonce the device signed (64 hex digits)")],
    source: Annotated[str | None, typer.Option(help="Where the device was seen (a store, a scanner)")] = None,
    export: Annotated[
        Path | None,
        typer.Option(help="Check offline against this 'fabguard ledger export' directory (no instance needed)"),
    ] = None,
    key: Annotated[Path | None, typer.Option(help="With --export (required): the ledger verifier key you kept")] = None,
) -> None:
    """Check one device's answer: on this instance (the nonce from 'fabguard field challenge', recorded as an
    event), or offline with --export (your own nonce; the export is audited first)."""
    chain = _read(cert, "the certificate chain").decode("utf-8", "replace")
    sig = _signature_text(signature)
    if export is None:
        with opened() as inst:
            origin = genuineness.parse_origin(inst, actor=actor(inst), source=source, client="cli")
            answer = genuineness.parse_answer(inst, origin, nonce=nonce, signature=sig, chain_pem=chain)
            result = genuineness.verify(inst, answer, origin)
        genuine, reason = bool(result["genuine"]), result["reason"]
        print_json(result)
    else:
        parse_source(source)
        leaf, raw_nonce, raw_sig = parse_chain(chain), parse_nonce(nonce), parse_signature(sig)
        if key is None:
            fail("--export needs --key, the ledger verifier key you kept: an export's own key proves nothing")
        verifier = _read(key, "the verifier key").decode("ascii", "replace").strip()
        try:
            verify_export(export, verifier=verifier)
        except AuditFailure as exc:
            fail(f"the export does not verify, so it proves nothing: {exc}", code=1)
        verdict = verify_offline(load_export(export), leaf, raw_nonce, raw_sig, datetime.now(UTC))
        genuine, reason = verdict.genuine, verdict.reason
        print_json({**verdict.to_dict(), "offline": True, "export": str(export)})
    if not genuine:
        err_console.print(f"[bold red]NOT genuine[/]: {reason}")
        raise typer.Exit(1)
    err_console.print("[green]genuine[/]")
