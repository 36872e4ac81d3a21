"""Firmware routes under /api/v1/firmware: releases for engineers and approvers, packages for fixtures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, Response
from pydantic import BaseModel, ConfigDict, Field

from fabguard.domain.issuance import FixtureFacts
from fabguard.service import firmware, firmware_units
from fabguard.service.instance import Instance
from fabguard.service.tokens import Principal


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReleaseIn(_Strict):
    product_id: str = Field(max_length=63)
    version: str = Field(max_length=64, description="1-64 of letters, digits and . + _ ~ -")
    notes: str = Field(default="", max_length=firmware.MAX_NOTES, description="Release notes")
    image: str = Field(description="The firmware image, base64 (standard alphabet, padded)")
    dual_control: bool = Field(default=False, description="Only a second person may approve this release")


class AttachIn(_Strict):
    order_id: str = Field(max_length=63)


class WithdrawIn(_Strict):
    reason: str = Field(max_length=500)


class FetchIn(_Strict):
    release_id: str = Field(max_length=64)
    order_id: str = Field(max_length=63)
    serial: str = Field(max_length=64)


def install_firmware(
    app: FastAPI,
    inst: Instance,
    fixture_dep: Callable[..., FixtureFacts],
    operator_dep: Callable[..., Principal],
    approver_dep: Callable[..., Principal],
    reader_dep: Callable[..., Principal],
    *,
    max_image_bytes: int = firmware.DEFAULT_MAX_IMAGE_BYTES,
) -> None:
    """Add the firmware routes; images above ``max_image_bytes`` are refused (413, ``image_too_large``).

    The app's body limit must leave room for the base64 image (4/3 of its size) plus the JSON around it.
    """
    fixture, operator, approver, reader = (
        Depends(fixture_dep),
        Depends(operator_dep),
        Depends(approver_dep),
        Depends(reader_dep),
    )

    @app.get("/api/v1/firmware/key", tags=["firmware"])
    def firmware_key() -> dict[str, str]:
        """The public key that signs every manifest: devices pin it (PEM)."""
        return {"public_key": firmware.firmware_public_key_pem(inst)}

    @app.post("/api/v1/firmware/releases", status_code=201, tags=["firmware"])
    def upload(body: ReleaseIn, p: Principal = operator) -> dict[str, Any]:
        """Upload an image: it is encrypted at rest at once, its manifest signed and its SBOM made."""
        image = firmware.decode_image(body.image, max_image_bytes)
        return firmware.upload_release(
            inst,
            product_id=body.product_id,
            version=body.version,
            image=image,
            notes=body.notes,
            dual_control=body.dual_control,
            actor=p.actor,
            max_image_bytes=max_image_bytes,
        ).to_dict()

    @app.get("/api/v1/firmware/releases", tags=["firmware"])
    def list_releases(product_id: str | None = None, _: Principal = reader) -> list[dict[str, Any]]:
        return [r.to_dict() for r in firmware.list_releases(inst, product_id=product_id)]

    @app.get("/api/v1/firmware/releases/{release_id}", tags=["firmware"])
    def get_release(release_id: str, _: Principal = reader) -> dict[str, Any]:
        return firmware.get_release(inst, release_id).to_dict()

    @app.get("/api/v1/firmware/releases/{release_id}/sbom", tags=["firmware"])
    def release_sbom(release_id: str, _: Principal = reader) -> dict[str, Any]:
        """The release's CycloneDX 1.5 SBOM (its SHA-256 is in the signed manifest)."""
        return firmware.release_sbom(inst, release_id)

    @app.post("/api/v1/firmware/releases/{release_id}/approve", tags=["firmware"])
    def approve(release_id: str, p: Principal = approver) -> dict[str, Any]:
        """Approve a release (under dual control, not by its uploader)."""
        return firmware.approve_release(inst, release_id, actor=p.actor).to_dict()

    @app.post("/api/v1/firmware/releases/{release_id}/attach", tags=["firmware"])
    def attach(release_id: str, body: AttachIn, p: Principal = operator) -> dict[str, Any]:
        """Offer a release to the units of an order."""
        return firmware.attach_release(inst, release_id, body.order_id, actor=p.actor).to_dict()

    @app.post("/api/v1/firmware/releases/{release_id}/withdraw", tags=["firmware"])
    def withdraw(release_id: str, body: WithdrawIn, p: Principal = operator) -> dict[str, Any]:
        """Stop releasing this version to any unit, for good."""
        return firmware.withdraw_release(inst, release_id, reason=body.reason, actor=p.actor).to_dict()

    @app.post("/api/v1/firmware/fetch", tags=["fixture"], response_class=Response)
    def fetch(body: FetchIn, f: FixtureFacts = fixture) -> Response:
        """One unit's package (binary): the signed manifest, the data key wrapped to that unit, the ciphertext."""
        done = firmware_units.release_to_unit(
            inst, f, release_id=body.release_id, order_id=body.order_id, serial=body.serial
        )
        return Response(
            done.package,
            media_type=firmware.PACKAGE_MEDIA_TYPE,
            headers={"X-FabGuard-Release": done.release_id, "X-FabGuard-Version": done.version},
        )


__all__ = ["AttachIn", "FetchIn", "ReleaseIn", "WithdrawIn", "install_firmware"]
