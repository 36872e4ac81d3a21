"""``fabguard firmware ...``: releases on the server's side, fetch on a line PC, open on (a model of) the device."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from rich.table import Table

from fabguard.cli.common import actor, approver, command, console, fail, opened, print_json
from fabguard.cli.remote import through
from fabguard.firmware import mcuboot
from fabguard.fixture.client import Credentials, FixtureClient
from fabguard.fixture.firmware import FirmwarePackageError, fetch_package, load_firmware_public_key, open_package
from fabguard.pki.keys import passphrase_from_env, read_encrypted_key
from fabguard.service.firmware import release_lifecycle, sealing_keys

firmware_app = typer.Typer(
    help="Encrypted firmware: upload, approve, attach to orders, withdraw; fetch a unit's package.",
    no_args_is_help=True,
)

ReleaseId = Annotated[str, typer.Argument(help="The release's id (see 'fabguard firmware list')")]


@command(firmware_app, "upload")
def upload(
    image: Annotated[Path, typer.Argument(help="The firmware image file")],
    product: Annotated[str, typer.Option(help="The product it is for")],
    version: Annotated[str, typer.Option(help="Its version, e.g. 1.4.0")],
    notes: Annotated[Path | None, typer.Option(help="A file of release notes")] = None,
    dual_control: Annotated[
        bool, typer.Option("--dual-control/--single-control", help="Only a second person may approve it")
    ] = False,
    max_size: Annotated[int, typer.Option(help="Refuse images larger than this many bytes")] = 2 * 1024 * 1024,
    sbom: Annotated[
        Path | None, typer.Option(help="The build's CycloneDX SBOM of the image (JSON); default: FabGuard makes one")
    ] = None,
) -> None:
    """Encrypt the image at rest, sign its manifest, make (or check) its SBOM; the release starts as 'uploaded'."""
    data = image.read_bytes()
    text = notes.read_text(encoding="utf-8") if notes else ""
    try:
        doc = json.loads(sbom.read_bytes()) if sbom else None
    except ValueError as exc:
        fail(f"--sbom {sbom} is not JSON: {exc}")
    with opened() as inst:
        release = release_lifecycle.upload_release(
            inst,
            product_id=product,
            version=version,
            image=data,
            notes=text,
            dual_control=dual_control,
            actor=actor(inst),
            max_image_bytes=max_size,
            sbom=doc,
        )
    console.print(f"Release [bold]{release.id}[/]: {product} {version}, {release.size} bytes, sha256 {release.sha256}")
    console.print("It needs approval ('fabguard firmware approve') and an order ('fabguard firmware attach').")


@command(firmware_app, "list")
def list_releases(
    product: Annotated[str | None, typer.Option(help="Only this product")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """The releases, oldest first, with their state and the orders they are attached to."""
    releases: list[dict[str, Any]] = through(
        lambda inst: [r.to_dict() for r in release_lifecycle.list_releases(inst, product_id=product)],
        lambda api: api.get("/api/v1/firmware/releases", product_id=product),
    )
    if as_json:
        print_json(releases)
        return
    table = Table("id", "product", "version", "state", "size", "dual control", "uploaded by", "approved by", "orders")
    for r in releases:
        table.add_row(
            r["id"],
            r["product_id"],
            r["version"],
            r["state"],
            str(r["size"]),
            "yes" if r["dual_control"] else "no",
            r["uploaded_by"],
            r["approved_by"] or "",
            ", ".join(r["orders"]),
        )
    console.print(table)


@command(firmware_app, "approve")
def approve(release_id: ReleaseId) -> None:
    """Approve a release (an approver's token in FABGUARD_TOKEN; under dual control, not the uploader's)."""
    release = through(
        lambda inst: release_lifecycle.approve_release(inst, release_id, actor=approver(inst).actor).to_dict(),
        lambda api: api.post(f"/api/v1/firmware/releases/{release_id}/approve"),
    )
    console.print(
        f"Release {release['id']} ({release['product_id']} {release['version']}) approved by {release['approved_by']}"
    )


@command(firmware_app, "attach")
def attach(
    release_id: ReleaseId, order: Annotated[str, typer.Option(help="The order whose units may receive it")]
) -> None:
    """Offer a release to the units of an order."""
    release = through(
        lambda inst: release_lifecycle.attach_release(inst, release_id, order, actor=actor(inst)).to_dict(),
        lambda api: api.post(f"/api/v1/firmware/releases/{release_id}/attach", {"order_id": order}),
    )
    console.print(f"Release {release['id']} attached to order {order}")


@command(firmware_app, "withdraw")
def withdraw(release_id: ReleaseId, reason: Annotated[str, typer.Option(help="Why (kept in the ledger)")]) -> None:
    """Stop releasing a version to any unit, for good."""
    through(
        lambda inst: release_lifecycle.withdraw_release(inst, release_id, reason=reason, actor=actor(inst)).to_dict(),
        lambda api: api.post(f"/api/v1/firmware/releases/{release_id}/withdraw", {"reason": reason}),
    )
    console.print(f"Release {release_id} withdrawn")


@command(firmware_app, "key")
def key(out: Annotated[Path | None, typer.Option(help="Also write the PEM here")] = None) -> None:
    """Print the firmware signing public key that devices pin (PEM); makes the key first on an instance made
    before 'fabguard init' made it (run locally, that is the operator's act; the API's GET makes nothing)."""
    with opened() as inst:
        pem = sealing_keys.public_key_pem(inst, make_if_missing=True)
    console.out(pem, end="")
    if out:
        out.write_text(pem)


@command(firmware_app, "fetch")
def fetch(
    credentials: Annotated[Path, typer.Option(help="The fixture's credentials directory (from 'fixture enroll')")],
    release: Annotated[str, typer.Option(help="The release id")],
    order: Annotated[str, typer.Option(help="The order the unit was provisioned on")],
    serial: Annotated[str, typer.Option(help="The unit's serial")],
    out: Annotated[Path, typer.Option(help="Where to write the package")],
) -> None:
    """On a line PC: fetch one unit's encrypted package (only that unit's key opens it)."""
    with FixtureClient(Credentials.load(credentials)) as client:
        package = fetch_package(client, order_id=order, serial=serial, release_id=release)
    out.write_bytes(package)
    console.print(f"Package for unit {serial} ({len(package)} bytes) written to {out}")


@command(firmware_app, "open")
def open_cmd(
    package: Annotated[Path, typer.Argument(help="A package fetched for this unit")],
    device_key: Annotated[Path, typer.Option(help="The unit's private key (PEM, unencrypted): a device model only")],
    serial: Annotated[str, typer.Option(help="The unit's serial")],
    firmware_key: Annotated[Path, typer.Option(help="The pinned firmware public key (PEM)")],
    out: Annotated[Path, typer.Option(help="Where to write the plaintext image")],
) -> None:
    """What the device runs: check the manifest signature, unwrap with the unit key, decrypt, check the digest."""
    key_obj = serialization.load_pem_private_key(device_key.read_bytes(), password=None)
    if not isinstance(key_obj, ec.EllipticCurvePrivateKey):
        fail("the device key must be an EC P-256 private key")
    try:
        opened_fw = open_package(
            package.read_bytes(),
            device_key=key_obj,
            serial=serial,
            firmware_key=load_firmware_public_key(firmware_key.read_bytes()),
        )
    except FirmwarePackageError as exc:
        fail(f"REJECTED: {exc}", code=1)
    out.write_bytes(opened_fw.image)
    console.print(f"[green]verified[/]: release {opened_fw.release_id} version {opened_fw.version}, image in {out}")


def _size(text: str, what: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        fail(f"{what} must be a number of bytes (decimal or 0x...), not {text!r}")


@command(firmware_app, "mcuboot")
def mcuboot_image(
    image: Annotated[Path, typer.Argument(help="The application binary, without an MCUboot header")],
    signing_key: Annotated[
        Path, typer.Option(help="MCUboot ECDSA P-256 signing key: encrypted PKCS#8 PEM (FABGUARD_KEY_PASSPHRASE)")
    ],
    version: Annotated[str, typer.Option(help="MCUboot version: major.minor.revision+build")],
    slot_size: Annotated[str, typer.Option(help="The image slot's size in bytes, e.g. 0x40000")],
    out: Annotated[Path, typer.Option(help="Where to write the MCUboot image")],
    encryption_key: Annotated[
        Path | None, typer.Option(help="The bootloader's ECIES-P256 public key (PEM); omit to sign only")
    ] = None,
    header_size: Annotated[str, typer.Option(help="MCUboot header size")] = "0x200",
    align: Annotated[int, typer.Option(help="Flash write alignment")] = 8,
) -> None:
    """Sign (ECDSA P-256) and encrypt (ECIES-P256) an image for MCUboot with imgtool; no key is written in clear."""
    key = read_encrypted_key(signing_key, passphrase_from_env())
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        fail("the MCUboot signing key must be an ECDSA P-256 key")
    built = mcuboot.build_mcuboot_image(
        image.read_bytes(),
        signing_key=key,
        encryption_key_pem=encryption_key.read_bytes() if encryption_key else None,
        version=version,
        slot_size=_size(slot_size, "--slot-size"),
        header_size=_size(header_size, "--header-size"),
        align=align,
    )
    out.write_bytes(built)
    what = "signed and encrypted" if encryption_key else "signed (not encrypted)"
    console.print(f"MCUboot image {version}, {what}: {len(built)} bytes written to {out}")


__all__ = ["firmware_app"]
