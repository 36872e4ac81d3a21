"""The core tables: catalogue, orders and quota changes, fixtures, test records, units, CAs and CRLs, the
event log with its ledger nodes and checkpoints, counters, and API and enrolment tokens.

Constraints here are the last line of defence: the quota CHECK holds even if code is wrong. Analytics and
firmware tables are in ``analytics_models`` and ``firmware_models``, on the same base (``base``).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from fabguard.store.base import Base, UTCDateTime


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The one site an operator token sees (None for every other role), and when the token stops
    # working (None for tokens made before expiry existed, migration 0008).
    site_id: Mapped[str | None] = mapped_column(String(63), nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The person holding it (migration 0017): dual control compares people, not tokens.
    person_id: Mapped[str] = mapped_column(ForeignKey("people.id"), index=True)
    # The person who made it and so saw its secret (the requester, for a token made through an approval);
    # None for the local operator, who acts without a token, and for tokens made before migration 0017
    # whose maker the ledger does not name.
    made_by_person: Mapped[str | None] = mapped_column(String(32), nullable=True)


class Product(Base):
    __tablename__ = "products"
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    key_types: Mapped[str] = mapped_column(String(100))
    cert_lifetime_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # CRA evidence (migration 0013): the last day of security support and where to report a vulnerability.
    support_until: Mapped[date | None] = mapped_column(Date, nullable=True)
    vulnerability_contact: Mapped[str | None] = mapped_column(String(500), nullable=True)
    # Key attestation (store/attestation_models.py holds the trusted roots): off, optional or required.
    attestation_policy: Mapped[str] = mapped_column(String(16), default="off", server_default="off")


class Site(Base):
    __tablename__ = "sites"
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("used >= 0 AND used <= quota", name="used_within_quota"),
        CheckConstraint("quota >= 0", name="quota_not_negative"),
    )
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"))
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    quota: Mapped[int] = mapped_column(Integer)
    used: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16))
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime())
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(128))
    # The issuing CA chosen when the order was created (by site and product); it signs all its units.
    issuing_ca: Mapped[str] = mapped_column(String(63), default="issuing", server_default="issuing")
    # How many units' identities the order has allocated from its product's pools (migration 0028): kept
    # here, under the order's lock, so a transaction reads one row instead of counting the order's identities.
    identities_allocated: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class QuotaChange(Base):
    """A request to raise an order's quota, applied only when a different person approves it."""

    __tablename__ = "quota_changes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    old_quota: Mapped[int] = mapped_column(Integer)
    new_quota: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(500))
    requested_by: Mapped[str] = mapped_column(String(128))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The person who asked (None for the local operator, who acts without a token).
    requester_person: Mapped[str | None] = mapped_column(String(32), nullable=True)


class Fixture(Base):
    __tablename__ = "fixtures"
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    enrolled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    cert_fingerprint: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    cert_serial: Mapped[str | None] = mapped_column(String(48), nullable=True)
    cert_not_after: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)


class EnrollmentToken(Base):
    __tablename__ = "enrollment_tokens"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    fixture_id: Mapped[str] = mapped_column(ForeignKey("fixtures.id"), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


# A failed test record, as the partial indexes on failed records name it (a query must say it the same way).
FAILED_RECORD = "outcome != 'PASS'"


class TestRecordRow(Base):
    """A unit's test record. Its station is the fixture that uploaded it (``fixture_id``), and ``site_id`` is
    that fixture's site when it uploaded: only records of the order's site decide its units (the test gate).
    ``declared_station_id`` is what the record's body says its station is, kept as said and trusted for nothing.
    """

    __tablename__ = "test_records"
    __table_args__ = (
        # The test gate's read: the latest record of each (serial, site).
        Index("ix_test_records_serial_site_id", "serial", "site_id", "id"),
        Index("ix_test_records_received_at", "received_at"),  # time-windowed analytics
        # The newest failed records of a range, a station, a site (the dashboard's failing units; 0029).
        *(
            Index(name, *columns, sqlite_where=text(FAILED_RECORD), postgresql_where=text(FAILED_RECORD))
            for name, columns in (
                ("ix_test_records_failed_received_at", ("received_at",)),
                ("ix_test_records_failed_fixture", ("fixture_id", "received_at")),
                ("ix_test_records_failed_site", ("site_id", "received_at")),
            )
        ),
    )
    __test__ = False
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    serial: Mapped[str] = mapped_column(String(64))
    fixture_id: Mapped[str] = mapped_column(ForeignKey("fixtures.id"))
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    declared_station_id: Mapped[str] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(16))
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int] = mapped_column(BigInteger)
    measurement_count: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    record_json: Mapped[str] = mapped_column(Text)


class RecordDigest(Base):
    """What the dashboard's bounded samples read of a test record instead of its JSON body
    (``analytics.record_digest``; migration 0031): its measurements with a value, and a failed record's
    failed steps. Written with the record; a record without one (stored before 0031, not yet filled in)
    is read from its body. A table of its own, not columns of ``test_records``: a record's row plus
    these is over what an SQLite page holds, and every row would take an overflow page."""

    __tablename__ = "record_digests"
    record_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("test_records.id"),
        primary_key=True,
        autoincrement=False,
    )
    measured: Mapped[str] = mapped_column(Text)
    failed_steps: Mapped[str | None] = mapped_column(Text, nullable=True)  # null for a passing record


class Unit(Base):
    """A provisioned unit: one serial of one product, bound to one key and one certificate."""

    __tablename__ = "units"
    __table_args__ = (
        UniqueConstraint("product_id", "serial", name="uq_units_product_serial"),
        Index("ix_units_serial", "serial"),  # unit search by serial or its start (migration 0026)
        Index("ix_units_order_id_id", "order_id", "id"),  # an order's units by id, newest first (migration 0032)
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"))
    serial: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"))
    fixture_id: Mapped[str] = mapped_column(ForeignKey("fixtures.id"))
    key_fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    cert_serial: Mapped[str] = mapped_column(String(48), unique=True)
    cert_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    certificate_pem: Mapped[str] = mapped_column(Text)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revocation_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    issuing_ca: Mapped[str] = mapped_column(String(63), default="issuing", server_default="issuing", index=True)
    # What attestation backed the certificate (JSON: format, evidence and chain digests), if any.
    attestation: Mapped[str | None] = mapped_column(Text, nullable=True)


class SupersededCertificate(Base):
    """A unit's certificate replaced by re-enrolment: revoked with reason ``superseded`` (RFC 5280
    CRLReason 4) at the re-enrolment, listed on its issuing CA's CRL and answered ``revoked`` by OCSP."""

    __tablename__ = "superseded_certificates"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    cert_serial: Mapped[str] = mapped_column(String(48), unique=True)
    issuing_ca: Mapped[str] = mapped_column(String(63), index=True)
    product_id: Mapped[str] = mapped_column(String(63))
    unit_serial: Mapped[str] = mapped_column(String(64))
    cert_sha256: Mapped[str] = mapped_column(String(64))
    superseded_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CertificateAuthority(Base):
    """The CA registry: the root, the station CA and any number of issuing CAs (per site, per product line).

    ``key_ref`` says where the private key lives: ``file:<name>`` (encrypted PKCS#8 in the instance's
    keys/) or ``pkcs11:<label>`` (non-extractable, in the HSM token). States: ``pending`` (a CSR waits for
    an offline root), ``active`` (chosen for new orders), ``retired`` (rotated out: still signs for the
    orders bound to it, still publishes its CRL), ``revoked`` (on the root's CRL; signs nothing).
    """

    __tablename__ = "certificate_authorities"
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    site_id: Mapped[str | None] = mapped_column(String(63), nullable=True)
    product_id: Mapped[str | None] = mapped_column(String(63), nullable=True)
    key_ref: Mapped[str] = mapped_column(String(200))
    certificate_pem: Mapped[str | None] = mapped_column(Text, nullable=True)
    csr_pem: Mapped[str | None] = mapped_column(Text, nullable=True)
    cert_serial: Mapped[str | None] = mapped_column(String(48), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revocation_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)


class CrlRow(Base):
    """The current CRL of each CA (root, issuing, station), re-signed on every revocation and on a schedule."""

    __tablename__ = "crls"
    ca: Mapped[str] = mapped_column(String(63), primary_key=True)
    number: Mapped[int] = mapped_column(BigInteger)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    this_update: Mapped[datetime] = mapped_column(UTCDateTime())
    next_update: Mapped[datetime] = mapped_column(UTCDateTime())


class OcspResponder(Base):
    """A delegated OCSP responder certificate of a CA (id-kp-OCSPSigning, id-pkix-ocsp-nocheck), with the key
    made for it alone (``key_ref``, in the instance's key store like the CAs' keys). Renewed, with a new key,
    before it expires; the newest of a CA signs its responses."""

    __tablename__ = "ocsp_responders"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    ca: Mapped[str] = mapped_column(String(63), index=True)
    key_ref: Mapped[str] = mapped_column(String(200))
    certificate_pem: Mapped[str] = mapped_column(Text)
    cert_serial: Mapped[str] = mapped_column(String(48))
    not_after: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Event(Base):
    """Every decision, in one gap-free sequence (the ledger issue turns it into a Merkle log)."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_order_kind", "order_id", "kind"),
        # Readers that follow one kind of event (webhook history, /metrics refusal counts, detectors).
        Index("ix_events_kind_seq", "kind", "seq"),
        # A unit's genealogy: every event naming its serial (migration 0026).
        Index("ix_events_serial_seq", "serial", "seq"),
    )
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str | None] = mapped_column(String(128), nullable=True)
    order_id: Mapped[str | None] = mapped_column(String(63), nullable=True)
    fixture_id: Mapped[str | None] = mapped_column(String(63), nullable=True)
    serial: Mapped[str | None] = mapped_column(String(64), nullable=True)
    code: Mapped[str | None] = mapped_column(String(40), nullable=True)
    detail: Mapped[str] = mapped_column(Text, default="{}")
    # The canonical bytes of the ledger entry (fabguard.ledger.entry), hashed as Merkle leaf seq-1.
    entry: Mapped[bytes] = mapped_column(LargeBinary)


class LedgerNode(Base):
    """Hashes of complete Merkle subtrees: level 0 holds leaf hashes; (level, idx) covers 2^level leaves."""

    __tablename__ = "ledger_nodes"
    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class CheckpointRow(Base):
    """Signed checkpoints, kept forever: an auditor compares them with the ones it saved."""

    __tablename__ = "checkpoints"
    size: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LedgerKeyRow(Base):
    """The ledger's checkpoint keys after the first rotation (none before: the instance's ``ledger`` key alone
    signs). Each key's endorsement by the one before and its retirement by the one after
    (``fabguard.ledger.keychain``)."""

    __tablename__ = "ledger_keys"
    generation: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    key_ref: Mapped[str] = mapped_column(String(200))
    verifier: Mapped[str] = mapped_column(Text)
    from_size: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    until_size: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), nullable=True)
    endorsement: Mapped[str | None] = mapped_column(Text, nullable=True)
    retirement: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Counter(Base):
    """Named counters taken under a row lock: the event sequence is one, so it never has a gap."""

    __tablename__ = "counters"
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)
