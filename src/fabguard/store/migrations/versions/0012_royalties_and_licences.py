"""royalty rates (a product's per-unit rate or an order's override, from a time on) and feature licences
(each product's licence signer, every licence issued)

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "royalty_rates",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("product_id", sa.String(length=63), nullable=False),
        sa.Column("order_id", sa.String(length=63), nullable=True),
        sa.Column("amount", sa.String(length=24), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("set_by", sa.String(length=128), nullable=False),
        sa.Column("event_seq", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_royalty_rates_order_id_orders")),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name=op.f("fk_royalty_rates_product_id_products")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_royalty_rates")),
    )
    with op.batch_alter_table("royalty_rates", schema=None) as batch_op:
        batch_op.create_index(
            "ix_royalty_rates_product_order", ["product_id", "order_id", "effective_from"], unique=False
        )

    op.create_table(
        "licence_signers",
        sa.Column("product_id", sa.String(length=63), nullable=False),
        sa.Column("key_ref", sa.String(length=200), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name=op.f("fk_licence_signers_product_id_products")),
        sa.PrimaryKeyConstraint("product_id", name=op.f("pk_licence_signers")),
    )
    op.create_table(
        "licences",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("product_id", sa.String(length=63), nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("cert_sha256", sa.String(length=64), nullable=False),
        sa.Column("features", sa.Text(), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issued_by", sa.String(length=128), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("event_seq", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name=op.f("fk_licences_product_id_products")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_licences")),
    )
    with op.batch_alter_table("licences", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_licences_serial"), ["serial"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("licences", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_licences_serial"))
    op.drop_table("licences")
    op.drop_table("licence_signers")
    with op.batch_alter_table("royalty_rates", schema=None) as batch_op:
        batch_op.drop_index("ix_royalty_rates_product_order")
    op.drop_table("royalty_rates")
