"""Answers to fixtures (test stations): stored test records and provisioned units, one or a batch."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from fabguard.api.responses import Out


class RefusalDetail(Out):
    code: str
    message: str


class StoredRecord(Out):
    id: int
    serial: str
    outcome: str


class StoredRecords(Out):
    """What a station's own report (ATML, TestStand, JUnit XML, CSV) stored: one record per UUT."""

    records: list[StoredRecord]


class RecordStored(StoredRecord):
    status: Literal["stored"]


class RecordRefused(Out):
    status: Literal["refused"]
    error: RefusalDetail


class RecordResults(Out):
    results: list[Annotated[RecordStored | RecordRefused, Field(discriminator="status")]] = Field(
        description="One per record, in order"
    )


class MatterIdentity(Out):
    vendor_id: int
    product_id: int
    discriminator: int
    passcode: int = Field(description="The setup passcode (the label's secret: never in the ledger)")
    flow: int
    discovery: int
    salt: str = Field(description="SPAKE2+ salt, base64")
    iterations: int
    verifier: str = Field(description="SPAKE2+ verifier, base64")
    qr_code: str = Field(description="The onboarding payload, MT:...")
    manual_code: str


class UnitIdentity(Out):
    """A unit's identities drawn from its product's pools (docs/identities.md)."""

    serial: str
    serial_index: int | None
    mac_addresses: list[str]
    matter: MatterIdentity | None


class ProvisionedUnit(Out):
    serial: str
    order_id: str
    certificate: str = Field(description="The device certificate, PEM")
    chain: list[str] = Field(description="Its issuing chain, PEM")
    replayed: bool = Field(description="A retry with the same serial and key: the certificate issued before")
    identity: UnitIdentity | None = Field(
        default=None, description="Its serial, MAC addresses and Matter data, where its product has identity pools"
    )


class UnitIssued(ProvisionedUnit):
    status: Literal["issued"]


class UnitRefused(Out):
    status: Literal["refused"]
    serial: str | None
    error: RefusalDetail


class UnitResults(Out):
    results: list[Annotated[UnitIssued | UnitRefused, Field(discriminator="status")]] = Field(
        description="One per unit, in order"
    )


class AllocatedIdentity(UnitIdentity):
    """A unit's identities allocated before it is provisioned (POST /api/v1/units/allocate)."""

    order_id: str
    replayed: bool = Field(description="Already allocated to this order (200): the same identities again")
