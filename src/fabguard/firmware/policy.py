"""Who may receive a release: the per-unit decision as a pure function over facts read in the transaction."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from fabguard.domain.errors import FIRMWARE_REFUSAL_STATUS, FabGuardError


class ReleaseState(StrEnum):
    UPLOADED = "uploaded"
    APPROVED = "approved"
    WITHDRAWN = "withdrawn"


class FirmwareRefusal(FabGuardError):
    """A refused firmware request: recorded as a ``firmware.refused`` event, releases nothing."""

    def __init__(self, code: str, message: str) -> None:
        if code not in FIRMWARE_REFUSAL_STATUS:
            raise ValueError(f"unknown firmware refusal code {code!r}")
        super().__init__(message, code=code, status=FIRMWARE_REFUSAL_STATUS[code])


@dataclass(frozen=True, slots=True)
class UnitReleaseFacts:
    """Everything the decision needs, read in one transaction (None: no such row)."""

    release_id: str
    release_state: ReleaseState
    release_product_id: str
    attached: bool
    fixture_site_id: str
    order_id: str
    order_site_id: str
    order_product_id: str
    order_active: bool
    serial: str
    unit_on_order: bool
    unit_revoked: bool
    unit_key_p256: bool  # the key of the unit's certificate, which the data key is wrapped to


_Row = TypeVar("_Row")


def release_found(release_id: str, release: _Row | None) -> _Row:
    if release is None:
        raise FirmwareRefusal("release_not_found", f"no firmware release {release_id!r}")
    return release


def order_found(order_id: str, order: _Row | None) -> _Row:
    if order is None:
        raise FirmwareRefusal("order_not_found", f"no order {order_id!r}")
    return order


def authorize_unit_release(f: UnitReleaseFacts) -> None:
    """Raise the first refusal that applies; return only when this unit may receive this release."""
    if f.fixture_site_id != f.order_site_id:
        raise FirmwareRefusal(
            "wrong_site", f"order {f.order_id} is for site {f.order_site_id}; this fixture is at {f.fixture_site_id}"
        )
    if not f.order_active:
        raise FirmwareRefusal("order_inactive", f"order {f.order_id} is not active")
    if not f.unit_on_order:
        raise FirmwareRefusal("unit_not_provisioned", f"unit {f.serial} is not provisioned on order {f.order_id}")
    if f.unit_revoked:
        raise FirmwareRefusal("unit_revoked", f"unit {f.serial} is revoked: it gets no firmware")
    if f.release_state is ReleaseState.WITHDRAWN:
        raise FirmwareRefusal("release_withdrawn", f"release {f.release_id} was withdrawn")
    if f.release_state is not ReleaseState.APPROVED:
        raise FirmwareRefusal("release_not_approved", f"release {f.release_id} is not approved yet")
    if f.release_product_id != f.order_product_id:
        raise FirmwareRefusal(
            "release_wrong_product", f"release {f.release_id} is for {f.release_product_id}, not {f.order_product_id}"
        )
    if not f.attached:
        raise FirmwareRefusal("release_not_attached", f"release {f.release_id} is not attached to order {f.order_id}")
    if not f.unit_key_p256:
        raise FirmwareRefusal("unit_key_unsupported", f"unit {f.serial}'s key is not P-256: firmware cannot be wrapped")


__all__ = [
    "FIRMWARE_REFUSAL_STATUS",
    "FirmwareRefusal",
    "ReleaseState",
    "UnitReleaseFacts",
    "authorize_unit_release",
    "order_found",
    "release_found",
]
