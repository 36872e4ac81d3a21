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


class ProvisionedUnit(Out):
    serial: str
    order_id: str
    certificate: str = Field(description="The device certificate, PEM")
    chain: list[str] = Field(description="Its issuing chain, PEM")
    replayed: bool = Field(description="A retry with the same serial and key: the certificate issued before")


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
