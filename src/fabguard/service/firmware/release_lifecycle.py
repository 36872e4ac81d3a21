"""Firmware releases: upload (sealed at rest, manifest signed, SBOM), approve, attach to orders, withdraw.

Each use case is one transaction holding its ledger event. Releasing to one unit is
:mod:`fabguard.service.firmware.unit_releases`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fabguard.domain.errors import Conflict, Forbidden, InvalidRequest, NotFound
from fabguard.firmware import envelope
from fabguard.firmware.policy import ReleaseState
from fabguard.firmware.sbom import accept_uploaded_sbom, firmware_sbom, validate_sbom
from fabguard.service.access import people
from fabguard.service.core.events import record_refusal
from fabguard.service.core.instance import Instance
from fabguard.service.firmware import sealing_keys
from fabguard.store.eventlog import append_event
from fabguard.store.firmware_models import FirmwareAttachment, FirmwareRelease
from fabguard.store.models import Order, Product

DEFAULT_MAX_IMAGE_BYTES = 2 * 1024 * 1024
PACKAGE_MEDIA_TYPE = envelope.PACKAGE_MEDIA_TYPE
MAX_NOTES = 10_000
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_~-]{0,63}$")
_ID_LIMIT = 64


@dataclass(frozen=True)
class ReleaseView:
    id: str
    product_id: str
    version: str
    notes: str
    size: int
    sha256: str
    state: str
    dual_control: bool
    uploaded_by: str
    uploaded_at: datetime
    approved_by: str | None
    approved_at: datetime | None
    withdrawn_by: str | None
    withdrawn_at: datetime | None
    withdraw_reason: str | None
    manifest: str
    manifest_signature: bytes
    signer: str
    orders: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "product_id": self.product_id,
            "version": self.version,
            "notes": self.notes,
            "size": self.size,
            "sha256": self.sha256,
            "state": self.state,
            "dual_control": self.dual_control,
            "uploaded_by": self.uploaded_by,
            "uploaded_at": self.uploaded_at.isoformat(),
            "approved_by": self.approved_by,
            "approved_at": self.approved_at.isoformat() if self.approved_at else None,
            "withdrawn_by": self.withdrawn_by,
            "withdrawn_at": self.withdrawn_at.isoformat() if self.withdrawn_at else None,
            "withdraw_reason": self.withdraw_reason,
            "manifest": json.loads(self.manifest),
            "manifest_signature": base64.b64encode(self.manifest_signature).decode(),
            "signer": self.signer,
            "orders": list(self.orders),
        }


def _view(r: FirmwareRelease, orders: list[str]) -> ReleaseView:
    return ReleaseView(
        id=r.id,
        product_id=r.product_id,
        version=r.version,
        notes=r.notes,
        size=r.size,
        sha256=r.sha256,
        state=r.state,
        dual_control=r.dual_control,
        uploaded_by=r.uploaded_by,
        uploaded_at=r.uploaded_at,
        approved_by=r.approved_by,
        approved_at=r.approved_at,
        withdrawn_by=r.withdrawn_by,
        withdrawn_at=r.withdrawn_at,
        withdraw_reason=r.withdraw_reason,
        manifest=r.manifest,
        manifest_signature=r.manifest_signature,
        signer=r.signer,
        orders=tuple(orders),
    )


def _attached(s: Session, release_id: str) -> list[str]:
    q = select(FirmwareAttachment.order_id).where(FirmwareAttachment.release_id == release_id)
    return list(s.execute(q.order_by(FirmwareAttachment.order_id)).scalars())


def decode_image(image_b64: str, max_image_bytes: int) -> bytes:
    """The image from its base64 text, bounded before and after decoding."""
    if len(image_b64) > (max_image_bytes + 2) // 3 * 4:
        raise InvalidRequest(f"the image is larger than {max_image_bytes} bytes", code="image_too_large", status=413)
    try:
        return base64.b64decode(image_b64, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("image is not valid base64", code="image_invalid") from None


def upload_release(
    inst: Instance,
    *,
    product_id: str,
    version: str,
    image: bytes,
    notes: str = "",
    dual_control: bool = False,
    actor: str,
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    sbom: dict[str, object] | None = None,
) -> ReleaseView:
    """Seal the image under a fresh data key, sign its manifest, build its SBOM (or check the one the OEM's
    build made, ``sbom``), store it: ``uploaded``."""
    _check_upload(version, notes, image, max_image_bytes)
    now = inst.clock()
    with inst.db.read() as s:
        if s.get(Product, product_id) is None:
            raise NotFound(f"no product {product_id!r}", code="product_not_found")
    release_id = "fw_" + secrets.token_hex(8)
    sealed = envelope.seal_image(image, release_id)
    key_nonce, wrapped_key = envelope.wrap_data_key(sealing_keys.kek(inst), sealed.data_key, release_id)
    sha256 = hashlib.sha256(image).hexdigest()
    if sbom is not None:
        sbom = accept_uploaded_sbom(sbom, sha256=sha256)
    else:
        sbom = firmware_sbom(
            product_id=product_id,
            version=version,
            sha256=sha256,
            size=len(image),
            release_id=release_id,
            supplier=inst.config.organization,
            timestamp=now,
        )
        validate_sbom(sbom)
    sbom_json = envelope.canonical_json(sbom)
    key = sealing_keys.signing_key(inst)
    signer = envelope.key_fingerprint(key.public_key())
    manifest = envelope.canonical_json(
        {
            "format": envelope.MANIFEST_FORMAT,
            "release_id": release_id,
            "product_id": product_id,
            "version": version,
            "size": len(image),
            "sha256": sha256,
            "cipher": "AES-256-GCM",
            "image_nonce": base64.b64encode(sealed.nonce).decode(),
            "ciphertext_sha256": hashlib.sha256(sealed.ciphertext).hexdigest(),
            "key_wrap": "ECIES-P256-HKDF-SHA256-AES-256-GCM",
            "sbom_sha256": hashlib.sha256(sbom_json).hexdigest(),
            "notes_sha256": hashlib.sha256(notes.encode()).hexdigest(),
            "created_at": now.isoformat(),
            "signer": signer,
        }
    )
    row = FirmwareRelease(
        id=release_id,
        product_id=product_id,
        version=version,
        notes=notes,
        size=len(image),
        sha256=sha256,
        ciphertext=sealed.ciphertext,
        image_nonce=sealed.nonce,
        wrapped_key=wrapped_key,
        key_nonce=key_nonce,
        kek_id=envelope.kek_id(sealing_keys.kek(inst)),
        manifest=manifest.decode(),
        manifest_signature=envelope.sign_manifest(key, manifest),
        signer=signer,
        sbom=sbom_json.decode(),
        state=ReleaseState.UPLOADED.value,
        dual_control=bool(dual_control),
        uploaded_by=actor,
        uploaded_at=now,
    )
    _store_release(inst, row, actor)
    return _view(row, [])


def _check_upload(version: str, notes: str, image: bytes, max_image_bytes: int) -> None:
    if not isinstance(version, str) or not _VERSION.match(version):
        raise InvalidRequest("version must be 1-64 of letters, digits and . + _ ~ -", code="version_invalid")
    if not isinstance(notes, str) or len(notes) > MAX_NOTES:
        raise InvalidRequest(f"release notes are at most {MAX_NOTES} characters", code="notes_invalid")
    if not image:
        raise InvalidRequest("the image is empty", code="image_invalid")
    if len(image) > max_image_bytes:
        raise InvalidRequest(f"the image is larger than {max_image_bytes} bytes", code="image_too_large", status=413)


def _store_release(inst: Instance, row: FirmwareRelease, actor: str) -> None:
    """Store an uploaded release with its ``firmware.uploaded`` event; one release per product and version."""
    exists = Conflict(f"{row.product_id} already has a release {row.version}", code="release_exists")
    try:
        with inst.db.transaction() as s:
            same = (FirmwareRelease.product_id == row.product_id, FirmwareRelease.version == row.version)
            if s.execute(select(FirmwareRelease.id).where(*same)).first() is not None:
                raise exists
            row.uploader_person = people.acting(s, actor).person_id
            s.add(row)
            s.flush()
            append_event(
                s,
                "firmware.uploaded",
                at=row.uploaded_at,
                actor=actor,
                detail={
                    "release_id": row.id,
                    "product_id": row.product_id,
                    "version": row.version,
                    "size": row.size,
                    "sha256": row.sha256,
                    "manifest_sha256": hashlib.sha256(row.manifest.encode()).hexdigest(),
                    "signer": row.signer,
                    "dual_control": row.dual_control,
                },
            )
    except IntegrityError:
        raise exists from None


def list_releases(inst: Instance, *, product_id: str | None = None) -> list[ReleaseView]:
    q = select(FirmwareRelease)
    if product_id:
        q = q.where(FirmwareRelease.product_id == product_id)
    with inst.db.read() as s:
        rows = list(s.execute(q.order_by(FirmwareRelease.uploaded_at, FirmwareRelease.id)).scalars())
        attached: dict[str, list[str]] = {}
        for a in s.execute(select(FirmwareAttachment).order_by(FirmwareAttachment.order_id)).scalars():
            attached.setdefault(a.release_id, []).append(a.order_id)
        return [_view(r, attached.get(r.id, [])) for r in rows]


def _release(s: Session, release_id: str, *, lock: bool = False) -> FirmwareRelease:
    row = s.get(FirmwareRelease, release_id, with_for_update=lock) if len(release_id) <= _ID_LIMIT else None
    if row is None:
        raise NotFound(f"no firmware release {release_id[:_ID_LIMIT]!r}", code="release_not_found")
    assert isinstance(row, FirmwareRelease)
    return row


def get_release(inst: Instance, release_id: str) -> ReleaseView:
    with inst.db.read() as s:
        row = _release(s, release_id)
        return _view(row, _attached(s, row.id))


def release_sbom(inst: Instance, release_id: str) -> dict[str, object]:
    with inst.db.read() as s:
        sbom: dict[str, object] = json.loads(_release(s, release_id).sbom)
        return sbom


def approve_release(inst: Instance, release_id: str, *, actor: str) -> ReleaseView:
    """Approve a release; under dual control not by its uploader's person (any token), refusal recorded."""
    try:
        return _approve_release(inst, release_id, actor=actor)
    except Forbidden as exc:
        if exc.code in ("same_approver", "same_person"):
            record_refusal(inst, "approval.refused", exc, actor=actor, detail={"release_id": release_id})
        raise


def _approve_release(inst: Instance, release_id: str, *, actor: str) -> ReleaseView:
    now = inst.clock()
    with inst.db.transaction() as s:
        row = _release(s, release_id, lock=True)
        if row.state == ReleaseState.WITHDRAWN:
            raise Conflict(f"release {row.id} was withdrawn", code="release_withdrawn")
        if row.state == ReleaseState.APPROVED:
            raise Conflict(f"release {row.id} is already approved", code="release_already_approved")
        decider = people.acting(s, actor)
        refused = people.second_person_refusal(people.acting(s, row.uploaded_by), decider)
        if row.dual_control and refused is not None:
            raise Forbidden(
                "this release is under dual control: a second person must approve it, not its uploader",
                code=refused,
            )
        row.state, row.approved_by, row.approved_at = ReleaseState.APPROVED.value, actor, now
        append_event(
            s,
            "firmware.approved",
            at=now,
            actor=actor,
            detail={
                "release_id": row.id,
                "product_id": row.product_id,
                "version": row.version,
                "uploaded_by": row.uploaded_by,
                "dual_control": row.dual_control,
                "uploader_person": row.uploader_person,
                "person_id": decider.person_id,
            },
        )
        return _view(row, _attached(s, row.id))


def attach_release(inst: Instance, release_id: str, order_id: str, *, actor: str) -> ReleaseView:
    """Offer a release to the units of an order (same product; not withdrawn)."""
    now = inst.clock()
    with inst.db.transaction() as s:
        row = _release(s, release_id, lock=True)
        order = s.get(Order, order_id) if len(order_id) <= 63 else None
        if order is None:
            raise NotFound(f"no order {order_id[:63]!r}", code="order_not_found")
        if row.state == ReleaseState.WITHDRAWN:
            raise Conflict(f"release {row.id} was withdrawn", code="release_withdrawn")
        if order.product_id != row.product_id:
            raise Conflict(
                f"release {row.id} is for {row.product_id}; order {order.id} makes {order.product_id}",
                code="release_wrong_product",
            )
        if s.get(FirmwareAttachment, (row.id, order.id)) is not None:
            raise Conflict(f"release {row.id} is already attached to order {order.id}", code="release_already_attached")
        s.add(FirmwareAttachment(release_id=row.id, order_id=order.id, attached_by=actor, attached_at=now))
        s.flush()
        append_event(
            s,
            "firmware.attached",
            at=now,
            actor=actor,
            order_id=order.id,
            detail={"release_id": row.id, "product_id": row.product_id, "version": row.version},
        )
        return _view(row, _attached(s, row.id))


def withdraw_release(inst: Instance, release_id: str, *, reason: str, actor: str) -> ReleaseView:
    """Stop releasing a version to any unit, for good."""
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 500:
        raise InvalidRequest("a withdrawal needs a reason of 1-500 characters", code="reason_invalid")
    now = inst.clock()
    with inst.db.transaction() as s:
        row = _release(s, release_id, lock=True)
        if row.state == ReleaseState.WITHDRAWN:
            raise Conflict(f"release {row.id} is already withdrawn", code="release_withdrawn")
        row.state, row.withdrawn_by, row.withdrawn_at, row.withdraw_reason = (
            ReleaseState.WITHDRAWN.value,
            actor,
            now,
            reason,
        )
        append_event(
            s,
            "firmware.withdrawn",
            at=now,
            actor=actor,
            detail={"release_id": row.id, "product_id": row.product_id, "version": row.version, "reason": reason},
        )
        return _view(row, _attached(s, row.id))


__all__ = [
    "DEFAULT_MAX_IMAGE_BYTES",
    "PACKAGE_MEDIA_TYPE",
    "ReleaseView",
    "approve_release",
    "attach_release",
    "decode_image",
    "get_release",
    "list_releases",
    "release_sbom",
    "upload_release",
    "withdraw_release",
]
