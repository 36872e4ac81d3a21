"""``fabguard handoff ...``: onboard a fleet to a device cloud without a shared secret (AWS IoT Core, Azure DPS),
and the signed manifest of an order's devices."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from fabguard.cli.common import Instance, actor, command, console
from fabguard.cli.remote import remote, through
from fabguard.domain.filenames import path_inside
from fabguard.pki.handoff import RegistrationCode, VerificationCode
from fabguard.service.handoff import clouds
from fabguard.service.ledger import reports

handoff_app = typer.Typer(
    help=(
        "Hand-off to device clouds: register an issuing CA with AWS IoT Core or Azure IoT Hub DPS (proof of "
        "possession signed by the CA key, recorded in the ledger), and signed device manifests."
    ),
    no_args_is_help=True,
)

Ca = Annotated[
    str, typer.Option("--ca", help="The issuing CA whose devices the cloud will trust (see 'fabguard ca list')")
]
Out = Annotated[Path, typer.Option("--out", help="Directory to write the files to (made if missing)")]


def _write(out: Path, files: dict[str, str]) -> None:
    """Write the files inside ``out`` only: every path is checked before the first is written."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {path_inside(out, name): text for name, text in files.items()}
    for path, text in paths.items():
        path.write_text(text)


@command(handoff_app, "aws")
def handoff_aws(
    ca: Ca,
    registration_code: Annotated[
        str, typer.Option("--registration-code", help="What 'aws iot get-registration-code' printed (64 hex digits)")
    ],
    out: Out,
    role_arn: Annotated[
        str | None,
        typer.Option("--role-arn", help="IAM role JITP provisions with; without it no registration-config.json"),
    ] = None,
    order: Annotated[
        str | None, typer.Option("--order", help="Only this order's devices in bulk-registration.jsonl")
    ] = None,
) -> None:
    """AWS IoT Core: CA, verification certificate (CN = the registration code), JITP template, device manifest."""

    def local(inst: Instance) -> dict[str, Any]:
        by = actor(inst)
        code = clouds.checked(inst, "aws", ca, lambda: RegistrationCode(registration_code), actor=by)
        return clouds.aws_bundle(inst, ca, code, role_arn=role_arn, order_id=order, actor=by).to_dict()

    body = {"ca": ca, "registration_code": registration_code, "role_arn": role_arn, "order_id": order}
    bundle = through(local, lambda api: api.post("/api/v1/handoff/aws", body))
    _write(out, bundle["files"])
    console.print(
        f"AWS hand-off for {ca} written to {out} ({len(bundle['files'])} files; ledger entry "
        f"{bundle['event_seq'] - 1}); next: see {out / 'README.txt'}"
    )


@command(handoff_app, "azure")
def handoff_azure(
    ca: Ca,
    verification_code: Annotated[
        str, typer.Option("--verification-code", help="The code DPS generated for the uploaded CA certificate")
    ],
    out: Out,
    enrollment_id: Annotated[
        str | None, typer.Option("--enrollment-id", help="Enrolment group id (default: the CA's name)")
    ] = None,
    certificate_name: Annotated[
        str | None, typer.Option("--certificate-name", help="The CA certificate's name in DPS (default: the CA's name)")
    ] = None,
) -> None:
    """Azure IoT Hub DPS: proof-of-possession certificate (CN = the verification code) and an X.509 enrolment group."""

    def local(inst: Instance) -> dict[str, Any]:
        by = actor(inst)
        code = clouds.checked(inst, "azure", ca, lambda: VerificationCode(verification_code), actor=by)
        return clouds.azure_bundle(
            inst, ca, code, enrollment_group_id=enrollment_id, certificate_name=certificate_name, actor=by
        ).to_dict()

    body = {
        "ca": ca,
        "verification_code": verification_code,
        "enrollment_group_id": enrollment_id,
        "certificate_name": certificate_name,
    }
    bundle = through(local, lambda api: api.post("/api/v1/handoff/azure", body))
    _write(out, bundle["files"])
    console.print(
        f"Azure DPS hand-off for {ca} written to {out} ({len(bundle['files'])} files; ledger entry "
        f"{bundle['event_seq'] - 1}); next: see {out / 'README.txt'}"
    )


@command(handoff_app, "manifest")
def handoff_manifest(
    order: Annotated[str, typer.Option("--order", help="The order whose devices to list")],
    out: Out,
) -> None:
    """manifest.json and manifest.csv (+ .sig) of an order's devices, signed by the ledger key at a checkpoint
    signed first, and recorded as a handoff.manifest event (as POST /api/v1/handoff/manifest/ORDER does).
    Through --server only manifest.json: the CSV would be a second hand-off, recorded again."""

    def local(inst: Instance) -> tuple[dict[str, Any], dict[str, str]]:
        manifest = clouds.order_manifest(inst, order, actor=actor(inst))
        text = clouds.manifest_csv(manifest)
        csv = {"manifest.csv": text, "manifest.csv.sig": reports.sign_bytes(inst, text.encode()) + "\n"}
        return manifest.to_dict(), csv

    signed, csv = through(local, lambda api: (api.post(f"/api/v1/handoff/manifest/{order}"), {}))
    _write(out, {"manifest.json": json.dumps(signed, indent=2, sort_keys=True) + "\n", **csv})
    console.print(
        f"{signed['manifest']['count']} devices of {order} written to {out}; check with "
        f"'fabguard audit verify-report {out / 'manifest.json'} --key ledger.pub'"
        + ("; through --server manifest.json only (the CSV is another hand-off: ?format=csv)" if remote() else "")
    )
