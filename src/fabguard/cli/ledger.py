"""``fabguard ledger ...``: the server's side of the ledger (checkpoints, keys, proofs, export, witnesses); the
auditor's offline side is ``fabguard audit`` (``cli/audit.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from fabguard.cli.common import Instance, JsonOption, actor, command, console, fail, opened, print_json
from fabguard.cli.remote import Remote, connected, remote, through
from fabguard.domain.errors import Conflict
from fabguard.domain.filenames import path_inside
from fabguard.domain.values import SiteId
from fabguard.service.ledger import ledger_keys, merkle_log, witness

ledger_app = typer.Typer(help="The tamper-evident ledger: checkpoints, proofs, export.", no_args_is_help=True)


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


@command(ledger_app, "keys")
def keys(json_out: JsonOption = False) -> None:
    """The chain of checkpoint keys: each key, the tree sizes it signs, who endorsed and retired it."""
    document = through(ledger_keys.document, lambda api: api.get("/api/v1/ledger/keys"))
    if json_out:
        print_json(document)
        return
    table = Table("verifier key", "signs sizes", "state")
    for k in document["keys"]:
        until = k["until_size"]
        table.add_row(
            k["verifier"],
            f"{k['from_size']}..{'' if until is None else until}",
            "retired" if until is not None else "signing",
        )
    console.print(table)


@command(ledger_app, "rotate-key")
def rotate_key(
    finish: Annotated[
        bool, typer.Option("--finish", help="End the overlap: retire the old key (the new one alone signs)")
    ] = False,
) -> None:
    """Rotate the checkpoint key with an overlap: a new key, endorsed by the old, and both sign checkpoints
    until --finish retires the old one. Give verifiers the new chain (ledger keys --json) in between."""

    def local(inst: Instance) -> dict[str, Any]:
        if finish:
            ledger_keys.finish_rotation(inst, actor=actor(inst))
        else:
            ledger_keys.rotate(inst, actor=actor(inst))
        return ledger_keys.document(inst)

    step = "finish-rotation" if finish else "rotate"
    chain = through(local, lambda api: api.post(f"/api/v1/ledger/keys/{step}", {}))
    keys = chain["keys"]
    if finish:
        retired = [k for k in keys if k["until_size"] is not None][-1]
        console.print(f"Retired key {retired['verifier']}: it covers tree sizes up to {retired['until_size']}")
    else:
        new = keys[-1]
        console.print(
            f"New checkpoint key {new['verifier']}, signing from tree size {new['from_size']}; "
            "checkpoints carry both signatures until 'fabguard ledger rotate-key --finish'"
        )


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
