"""initial schema

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_table(
        "checkpoints",
        sa.Column("size", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False),
        sa.Column("root", sa.LargeBinary(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("size", name=op.f("pk_checkpoints")),
    )
    op.create_table(
        "counters",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_counters")),
    )
    op.create_table(
        "events",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=True),
        sa.Column("order_id", sa.String(length=63), nullable=True),
        sa.Column("fixture_id", sa.String(length=63), nullable=True),
        sa.Column("serial", sa.String(length=64), nullable=True),
        sa.Column("code", sa.String(length=40), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("entry", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_events")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_order_kind", ["order_id", "kind"], unique=False)

    op.create_table(
        "ledger_nodes",
        sa.Column("level", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name=op.f("pk_ledger_nodes")),
    )
    op.create_table(
        "products",
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("key_types", sa.String(length=100), nullable=False),
        sa.Column("cert_lifetime_days", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
    )
    op.create_table(
        "sites",
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sites")),
    )
    op.create_table(
        "fixtures",
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("site_id", sa.String(length=63), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cert_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("cert_serial", sa.String(length=48), nullable=True),
        sa.Column("cert_not_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_fixtures_site_id_sites")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fixtures")),
        sa.UniqueConstraint("cert_fingerprint", name=op.f("uq_fixtures_cert_fingerprint")),
    )
    op.create_table(
        "orders",
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("product_id", sa.String(length=63), nullable=False),
        sa.Column("site_id", sa.String(length=63), nullable=False),
        sa.Column("quota", sa.Integer(), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.CheckConstraint("quota >= 0", name=op.f("ck_orders_quota_not_negative")),
        sa.CheckConstraint("used >= 0 AND used <= quota", name=op.f("ck_orders_used_within_quota")),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name=op.f("fk_orders_product_id_products")),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_orders_site_id_sites")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
    )
    op.create_table(
        "enrollment_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("fixture_id", sa.String(length=63), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["fixture_id"], ["fixtures.id"], name=op.f("fk_enrollment_tokens_fixture_id_fixtures")),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_enrollment_tokens")),
    )
    with op.batch_alter_table("enrollment_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_enrollment_tokens_fixture_id"), ["fixture_id"], unique=False)

    op.create_table(
        "quota_changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("order_id", sa.String(length=63), nullable=False),
        sa.Column("old_quota", sa.Integer(), nullable=False),
        sa.Column("new_quota", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("requested_by", sa.String(length=128), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(length=128), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_quota_changes_order_id_orders")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quota_changes")),
    )
    with op.batch_alter_table("quota_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_quota_changes_order_id"), ["order_id"], unique=False)

    op.create_table(
        "test_records",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("fixture_id", sa.String(length=63), nullable=False),
        sa.Column("station_id", sa.String(length=128), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("start_ms", sa.BigInteger(), nullable=False),
        sa.Column("end_ms", sa.BigInteger(), nullable=False),
        sa.Column("measurement_count", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("record_json", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["fixture_id"], ["fixtures.id"], name=op.f("fk_test_records_fixture_id_fixtures")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_test_records")),
    )
    with op.batch_alter_table("test_records", schema=None) as batch_op:
        batch_op.create_index("ix_test_records_serial_id", ["serial", "id"], unique=False)

    op.create_table(
        "units",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("product_id", sa.String(length=63), nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.String(length=63), nullable=False),
        sa.Column("fixture_id", sa.String(length=63), nullable=False),
        sa.Column("key_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("cert_serial", sa.String(length=48), nullable=False),
        sa.Column("cert_sha256", sa.String(length=64), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["fixture_id"], ["fixtures.id"], name=op.f("fk_units_fixture_id_fixtures")),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_units_order_id_orders")),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name=op.f("fk_units_product_id_products")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_units")),
        sa.UniqueConstraint("cert_serial", name=op.f("uq_units_cert_serial")),
        sa.UniqueConstraint("cert_sha256", name=op.f("uq_units_cert_sha256")),
        sa.UniqueConstraint("key_fingerprint", name=op.f("uq_units_key_fingerprint")),
        sa.UniqueConstraint("product_id", "serial", name="uq_units_product_serial"),
    )
    with op.batch_alter_table("units", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_units_order_id"), ["order_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("units", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_units_order_id"))

    op.drop_table("units")
    with op.batch_alter_table("test_records", schema=None) as batch_op:
        batch_op.drop_index("ix_test_records_serial_id")

    op.drop_table("test_records")
    with op.batch_alter_table("quota_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quota_changes_order_id"))

    op.drop_table("quota_changes")
    with op.batch_alter_table("enrollment_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_enrollment_tokens_fixture_id"))

    op.drop_table("enrollment_tokens")
    op.drop_table("orders")
    op.drop_table("fixtures")
    op.drop_table("sites")
    op.drop_table("products")
    op.drop_table("ledger_nodes")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_order_kind")

    op.drop_table("events")
    op.drop_table("counters")
    op.drop_table("checkpoints")
    op.drop_table("api_tokens")
