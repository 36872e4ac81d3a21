"""Labels for an order's units, from the identities allocated to them (docs/identities.md, "Labels").

One label per allocated unit, in allocation order: the serial, the MAC addresses and a QR code, the
Matter onboarding payload (with the manual code printed under it) for a Matter pool, else a field-check
URL carrying the serial. A Matter label carries the passcode (that is what it is for), so printing is an
act: recorded as an ``order.labels_printed`` event with the count, never the codes.
"""

from __future__ import annotations

from typing import Literal

from fabguard.domain.errors import InvalidRequest, NotFound
from fabguard.domain.identities import MacAddress
from fabguard.domain.values import OrderId, Serial
from fabguard.labels import UnitLabel, field_check_url, pdf_labels, zpl_labels
from fabguard.pki.matter import (
    CommissioningFlow,
    DiscoveryCapability,
    Discriminator,
    OnboardingPayload,
    SetupPasscode,
    VendorId,
)
from fabguard.pki.matter import ProductId as MatterProductId
from fabguard.service.core.instance import Instance
from fabguard.store import identities as rows
from fabguard.store.eventlog import append_event
from fabguard.store.identity_models import UnitIdentityRow
from fabguard.store.models import Order

LabelFormat = Literal["pdf", "zpl"]


def _label(row: UnitIdentityRow, check_url: str | None, title: str | None) -> UnitLabel:
    macs = tuple(MacAddress(row.mac_first + i) for i in range(row.mac_count)) if row.mac_first is not None else ()
    serial = Serial(row.serial)
    if row.passcode is not None:
        assert row.vendor_id is not None and row.matter_product_id is not None and row.discriminator is not None
        payload = OnboardingPayload(
            VendorId(row.vendor_id),
            MatterProductId(row.matter_product_id),
            Discriminator(row.discriminator),
            SetupPasscode(row.passcode),
            flow=CommissioningFlow(row.flow or 0),
            discovery=DiscoveryCapability(row.discovery or 2),
        )
        return UnitLabel(serial, payload.qr_code(), macs, payload.manual_code_grouped(), title)
    if check_url is None:
        raise InvalidRequest(
            f"unit {row.serial} has no Matter code for its QR: give a field-check URL", code="invalid_label"
        )
    return UnitLabel(serial, field_check_url(check_url, serial), macs, None, title)


def order_labels(
    inst: Instance,
    order_id: OrderId,
    fmt: LabelFormat,
    *,
    check_url: str | None = None,
    title: str | None = None,
    actor: str,
) -> tuple[bytes, int]:
    """The labels of every unit whose identities were allocated to the order, as a PDF or ZPL; and how many."""
    with inst.db.transaction() as s:
        if s.get(Order, order_id.value) is None:
            raise NotFound(f"no order {order_id}", code="order_not_found")
        labels = [_label(row, check_url, title) for row in rows.identities_of_order(s, order_id.value)]
        if not labels:
            raise NotFound(f"order {order_id} holds no allocated identities to label", code="not_found")
        data = pdf_labels(labels) if fmt == "pdf" else zpl_labels(labels).encode("ascii")
        append_event(
            s,
            "order.labels_printed",
            at=inst.clock(),
            actor=actor,
            order_id=order_id.value,
            detail={"labels": len(labels), "format": fmt},
        )
    return data, len(labels)
