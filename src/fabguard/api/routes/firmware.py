"""Firmware routes under /api/v1/firmware: releases for engineers and approvers, packages for fixtures.

Images above ``firmware.DEFAULT_MAX_IMAGE_BYTES`` are refused (413, ``image_too_large``); the app's body
limit leaves room for the base64 image (4/3 of its size) plus the JSON around it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from fabguard.api import parsing
from fabguard.api.deps import Approver, Engineer, Fixture, Inst, Reader
from fabguard.api.documents import CycloneDxSbom, Published
from fabguard.api.media import answers
from fabguard.api.responses.firmware import Release
from fabguard.service.firmware import release_lifecycle, sealing_keys, unit_releases

router = APIRouter()

MAX_IMAGE_BYTES = release_lifecycle.DEFAULT_MAX_IMAGE_BYTES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReleaseIn(_Strict):
    product_id: str = Field(max_length=63)
    version: str = Field(max_length=64, description="1-64 of letters, digits and . + _ ~ -")
    notes: str = Field(default="", max_length=release_lifecycle.MAX_NOTES, description="Release notes")
    image: str = Field(description="The firmware image, base64 (standard alphabet, padded)")
    dual_control: bool = Field(default=False, description="Only a second person may approve this release")
    sbom: Annotated[dict[str, Any] | None, Published(CycloneDxSbom | None)] = Field(
        default=None,
        description="The build's own CycloneDX SBOM of the image (JSON); it must be schema-valid and name the "
        "image's SHA-256 in metadata.component. Default: FabGuard makes one",
    )


class AttachIn(_Strict):
    order_id: str = Field(max_length=63)


class WithdrawIn(_Strict):
    reason: str = Field(max_length=500)


class FetchIn(_Strict):
    release_id: str = Field(max_length=64)
    order_id: str = Field(max_length=63)
    serial: str = Field(max_length=64)


@router.get("/api/v1/firmware/key", tags=["firmware"])
def firmware_key(inst: Inst) -> dict[str, str]:
    """The public key that signs every manifest: devices pin it (PEM)."""
    return {"public_key": sealing_keys.public_key_pem(inst)}


@router.post("/api/v1/firmware/releases", status_code=201, tags=["firmware"], response_model=Release)
def upload_release(inst: Inst, body: ReleaseIn, p: Engineer) -> dict[str, Any]:
    """Upload an image: it is encrypted at rest at once, its manifest signed and its SBOM made."""
    image = release_lifecycle.decode_image(body.image, MAX_IMAGE_BYTES)
    return release_lifecycle.upload_release(
        inst,
        product_id=body.product_id,
        version=body.version,
        image=image,
        notes=body.notes,
        dual_control=body.dual_control,
        actor=p.actor,
        max_image_bytes=MAX_IMAGE_BYTES,
        sbom=body.sbom,
    ).to_dict()


@router.get("/api/v1/firmware/releases", tags=["firmware"], response_model=list[Release])
def list_releases(inst: Inst, _: Reader, product_id: str | None = None) -> list[dict[str, Any]]:
    return [r.to_dict() for r in release_lifecycle.list_releases(inst, product_id=product_id)]


@router.get("/api/v1/firmware/releases/{release_id}", tags=["firmware"], response_model=Release)
def get_release(inst: Inst, release_id: str, _: Reader) -> dict[str, Any]:
    return release_lifecycle.get_release(inst, release_id).to_dict()


# The SBOM is answered as stored, not through its model: its SHA-256 is in the signed manifest, and the
# CycloneDX fields past the envelope differ between versions (api/documents.py's CycloneDxSbom).
@router.get(
    "/api/v1/firmware/releases/{release_id}/sbom",
    tags=["firmware"],
    response_model=None,
    responses={200: {"model": CycloneDxSbom, "description": "The SBOM, as stored"}},
)
def release_sbom(inst: Inst, release_id: str, _: Reader) -> dict[str, Any]:
    """The release's CycloneDX SBOM (1.6 as FabGuard makes it, or the build's own as uploaded; its SHA-256
    is in the signed manifest)."""
    return release_lifecycle.release_sbom(inst, release_id)


@router.post("/api/v1/firmware/releases/{release_id}/approve", tags=["firmware"], response_model=Release)
def approve_release(inst: Inst, release_id: str, p: Approver) -> dict[str, Any]:
    """Approve a release (under dual control, not by its uploader)."""
    return release_lifecycle.approve_release(inst, release_id, actor=p.actor).to_dict()


@router.post("/api/v1/firmware/releases/{release_id}/attach", tags=["firmware"], response_model=Release)
def attach_release(inst: Inst, release_id: str, body: AttachIn, p: Engineer) -> dict[str, Any]:
    """Offer a release to the units of an order."""
    return release_lifecycle.attach_release(inst, release_id, body.order_id, actor=p.actor).to_dict()


@router.post("/api/v1/firmware/releases/{release_id}/withdraw", tags=["firmware"], response_model=Release)
def withdraw_release(inst: Inst, release_id: str, body: WithdrawIn, p: Engineer) -> dict[str, Any]:
    """Stop releasing this version to any unit, for good."""
    return release_lifecycle.withdraw_release(inst, release_id, reason=body.reason, actor=p.actor).to_dict()


@router.post(
    "/api/v1/firmware/fetch", tags=["fixture"], **answers("The unit's package", release_lifecycle.PACKAGE_MEDIA_TYPE)
)
def fetch_firmware(inst: Inst, body: FetchIn, f: Fixture) -> Response:
    """One unit's package (binary): the signed manifest, the data key wrapped to that unit, the ciphertext."""
    request = parsing.unit_firmware_request(body.release_id, body.order_id, body.serial)
    done = unit_releases.release_to_unit(inst, f, request)
    return Response(
        done.package,
        media_type=release_lifecycle.PACKAGE_MEDIA_TYPE,
        headers={"X-FabGuard-Release": done.release_id, "X-FabGuard-Version": done.version},
    )


__all__ = ["AttachIn", "FetchIn", "ReleaseIn", "WithdrawIn", "router"]
