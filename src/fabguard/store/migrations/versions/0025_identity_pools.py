"""identity pools: a product's serial format, MAC block and Matter settings, and the identities given out

Revision ID: 0025
Revises: 0024
"""

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identity_pools",
        sa.Column("product_id", sa.String(length=63), nullable=False),
        sa.Column("serial_prefix", sa.String(length=32), nullable=True),
        sa.Column("serial_width", sa.Integer(), nullable=True),
        sa.Column("serial_check", sa.String(length=32), nullable=True),
        sa.Column("serials_required", sa.Boolean(), nullable=False),
        sa.Column("serial_capacity", sa.BigInteger(), nullable=True),
        sa.Column("next_serial", sa.BigInteger(), nullable=False),
        sa.Column("mac_prefix", sa.String(length=16), nullable=True),
        sa.Column("mac_first", sa.BigInteger(), nullable=True),
        sa.Column("mac_count", sa.BigInteger(), nullable=True),
        sa.Column("mac_per_unit", sa.Integer(), nullable=True),
        sa.Column("mac_capacity", sa.BigInteger(), nullable=True),
        sa.Column("next_mac_unit", sa.BigInteger(), nullable=False),
        sa.Column("matter_vendor_id", sa.Integer(), nullable=True),
        sa.Column("matter_product_id", sa.Integer(), nullable=True),
        sa.Column("matter_flow", sa.Integer(), nullable=True),
        sa.Column("matter_discovery", sa.Integer(), nullable=True),
        sa.Column("matter_iterations", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "next_serial >= 0 AND (serial_capacity IS NULL OR next_serial <= serial_capacity)",
            name=op.f("ck_identity_pools_serials_within"),
        ),
        sa.CheckConstraint(
            "next_mac_unit >= 0 AND (mac_capacity IS NULL OR next_mac_unit <= mac_capacity)",
            name=op.f("ck_identity_pools_macs_within"),
        ),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name=op.f("fk_identity_pools_product_id_products")),
        sa.PrimaryKeyConstraint("product_id", name=op.f("pk_identity_pools")),
    )
    op.create_table(
        "unit_identities",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("product_id", sa.String(length=63), nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.String(length=63), nullable=False),
        sa.Column("fixture_id", sa.String(length=63), nullable=False),
        sa.Column("serial_index", sa.BigInteger(), nullable=True),
        sa.Column("mac_unit", sa.BigInteger(), nullable=True),
        sa.Column("mac_first", sa.BigInteger(), nullable=True),
        sa.Column("mac_count", sa.Integer(), nullable=False),
        sa.Column("vendor_id", sa.Integer(), nullable=True),
        sa.Column("matter_product_id", sa.Integer(), nullable=True),
        sa.Column("flow", sa.Integer(), nullable=True),
        sa.Column("discovery", sa.Integer(), nullable=True),
        sa.Column("passcode", sa.Integer(), nullable=True),
        sa.Column("discriminator", sa.Integer(), nullable=True),
        sa.Column("salt", sa.String(length=64), nullable=True),
        sa.Column("iterations", sa.Integer(), nullable=True),
        sa.Column("verifier", sa.String(length=194), nullable=True),
        sa.Column("allocated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_unit_identities_order_id_orders")),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name=op.f("fk_unit_identities_product_id_products")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_unit_identities")),
        sa.UniqueConstraint("passcode", name=op.f("uq_unit_identities_passcode")),
        sa.UniqueConstraint("product_id", "serial", name="uq_unit_identities_product_serial"),
    )
    with op.batch_alter_table("unit_identities", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_unit_identities_order_id"), ["order_id"], unique=False)
    op.create_table(
        "allocated_macs",
        sa.Column("address", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("product_id", sa.String(length=63), nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("address", name=op.f("pk_allocated_macs")),
    )


def downgrade() -> None:
    op.drop_table("allocated_macs")
    with op.batch_alter_table("unit_identities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_unit_identities_order_id"))
    op.drop_table("unit_identities")
    op.drop_table("identity_pools")
