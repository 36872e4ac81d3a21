"""A product's identity pools, as the OEM declares them: a serial format (and whether its units must carry
an allocated serial), a MAC block, and for a Matter product the vendor and product IDs its onboarding
codes carry. Pure values; the counters (which n is next) live in the database (``store/identity_models``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fabguard.domain.errors import Conflict, InvalidRequest
from fabguard.domain.identities.macs import MacBlock
from fabguard.domain.identities.serials import CheckAlgorithm, SerialFormat
from fabguard.domain.values import describe_value

MATTER_ID_MAX = 0xFFFF


def _pool_invalid(message: str) -> InvalidRequest:
    return InvalidRequest(message, code="invalid_identity_pool")


@dataclass(frozen=True, slots=True)
class MatterPool:
    """What every unit's onboarding data shares: vendor and product ID (16 bits each, not 0), the
    commissioning flow, the discovery capabilities and the SPAKE2+ iteration count. The PKI layer
    (``pki/matter/onboarding.py``) checks flow, discovery bits and iterations against the specification."""

    vendor_id: int
    product_id: int
    flow: int = 0
    discovery: int = 2
    iterations: int = 10000

    def __post_init__(self) -> None:
        for name, value in (("vendor_id", self.vendor_id), ("product_id", self.product_id)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MATTER_ID_MAX:
                raise _pool_invalid(f"Matter {name} {describe_value(value)} is not 1-65535")


@dataclass(frozen=True, slots=True)
class IdentityPool:
    """A product's pools: any of serials, MAC addresses and Matter onboarding data, at least one.

    ``serials_required``: a unit of the product is provisioned only under a serial allocated to its
    order (``serial_not_allocated`` otherwise); it needs a serial format to allocate from."""

    serials: SerialFormat | None = None
    serials_required: bool = False
    macs: MacBlock | None = None
    matter: MatterPool | None = None

    def __post_init__(self) -> None:
        if self.serials is None and self.macs is None and self.matter is None:
            raise _pool_invalid("an identity pool declares a serial format, a MAC block or Matter onboarding data")
        if self.serials_required and self.serials is None:
            raise _pool_invalid("allocated serials need a serial format to allocate them from")

    @property
    def draws_at_provisioning(self) -> bool:
        """Whether a unit provisioned without an allocation gets one then (its MAC addresses, its Matter data)."""
        return self.macs is not None or self.matter is not None

    @property
    def serial_capacity(self) -> int | None:
        return None if self.serials is None else self.serials.capacity

    @property
    def mac_capacity(self) -> int | None:
        return None if self.macs is None else self.macs.capacity

    def mac_range(self) -> tuple[int, int] | None:
        """The block's addresses as ``[start, end)`` integers."""
        if self.macs is None:
            return None
        start = self.macs.first_address.value
        return start, start + self.macs.size


def pool_replaceable(product_id: str, identities_given: int) -> None:
    """A pool that has given identities out stays as it is: another format or block could give one twice."""
    if identities_given:
        raise Conflict(
            f"product {product_id} has allocated {identities_given} units' identities; its pools stay as declared",
            code="identity_pool_in_use",
        )


def mac_block_apart(product_id: str, block: tuple[int, int] | None, others: Sequence[tuple[str, int, int]]) -> None:
    """A product's MAC block overlaps no other product's (``others``: product, start, end), so no address
    can be given twice."""
    if block is None:
        return
    start, end = block
    for other, o_start, o_end in others:
        if other != product_id and start < o_end and o_start < end:
            raise _pool_invalid(f"the MAC block of product {product_id} overlaps the block of product {other}")


def _field(data: Mapping[str, object], name: str, kind: type, default: object = None) -> Any:
    value = data.get(name, default)
    if value is None and default is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _pool_invalid(f"{name} {describe_value(value)} is not a {kind.__name__}")
    return value


def _section(data: Mapping[str, object], name: str) -> Mapping[str, object] | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _pool_invalid(f"{name} is an object")
    return value


def pool_from_json(data: Mapping[str, object]) -> IdentityPool:
    """A declaration as the API and the CLI send it: ``{"serials": {"prefix", "width", "check", "required"},
    "macs": {"prefix", "per_unit", "first", "count"}, "matter": {"vendor_id", "product_id", "flow",
    "discovery", "iterations"}}``, each section optional (docs/identities.md)."""
    serials, required = None, False
    if (s := _section(data, "serials")) is not None:
        check = _field(s, "check", str, CheckAlgorithm.ISO7064_MOD_37_36.value)
        if check not in {c.value for c in CheckAlgorithm}:
            raise InvalidRequest(f"unknown check algorithm {describe_value(check)}", code="invalid_serial_format")
        serials = SerialFormat(_field(s, "prefix", str, ""), _field(s, "width", int, 6), CheckAlgorithm(check))
        required = _field(s, "required", bool, False)
    macs = None
    if (m := _section(data, "macs")) is not None:
        macs = MacBlock.parse(
            _field(m, "prefix", str, ""),
            per_unit=_field(m, "per_unit", int, 1),
            first=_field(m, "first", int, 0),
            count=_field(m, "count", int),
        )
    matter = None
    if (t := _section(data, "matter")) is not None:
        matter = MatterPool(
            _field(t, "vendor_id", int, 0),
            _field(t, "product_id", int, 0),
            _field(t, "flow", int, 0),
            _field(t, "discovery", int, 2),
            _field(t, "iterations", int, 10000),
        )
    return IdentityPool(serials, required, macs, matter)


def pool_json(pool: IdentityPool) -> dict[str, object]:
    """The declaration, in the shape :func:`pool_from_json` reads."""
    s, m, t = pool.serials, pool.macs, pool.matter
    return {
        "serials": None
        if s is None
        else {"prefix": s.prefix, "width": s.width, "check": s.check.value, "required": pool.serials_required},
        "macs": None
        if m is None
        else {
            "prefix": m.prefix_text,
            "assignment": m.assignment.value,
            "per_unit": m.per_unit,
            "first": m.first,
            "count": m.size,
            "first_address": str(m.first_address),
            "units": m.capacity,
        },
        "matter": None
        if t is None
        else {
            "vendor_id": t.vendor_id,
            "product_id": t.product_id,
            "flow": t.flow,
            "discovery": t.discovery,
            "iterations": t.iterations,
        },
    }


def leasable(order_id: str, product_id: str, declares_pools: bool) -> None:
    """A site agent issues offline, where no pool can be drawn from: an order whose product declares
    identity pools is not leased (ADR 0014); its units' identities are allocated by the central server."""
    if declares_pools:
        raise Conflict(
            f"order {order_id} cannot be leased: product {product_id} draws its units' identities from pools, "
            "allocated by the central server only",
            code="lease_order_unsupported",
        )
