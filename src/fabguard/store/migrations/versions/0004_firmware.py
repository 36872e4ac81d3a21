"""encrypted firmware releases and their attachments to orders

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "firmware_releases",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("product_id", sa.String(length=63), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("image_nonce", sa.LargeBinary(length=12), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(length=64), nullable=False),
        sa.Column("key_nonce", sa.LargeBinary(length=12), nullable=False),
        sa.Column("kek_id", sa.String(length=16), nullable=False),
        sa.Column("manifest", sa.Text(), nullable=False),
        sa.Column("manifest_signature", sa.LargeBinary(length=128), nullable=False),
        sa.Column("signer", sa.String(length=64), nullable=False),
        sa.Column("sbom", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("dual_control", sa.Boolean(), nullable=False),
        sa.Column("uploaded_by", sa.String(length=128), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("approved_by", sa.String(length=128), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("withdrawn_by", sa.String(length=128), nullable=True),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("withdraw_reason", sa.String(length=500), nullable=True),
        sa.CheckConstraint(
            "state IN ('uploaded', 'approved', 'withdrawn')", name=op.f("ck_firmware_releases_state_known")
        ),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name=op.f("fk_firmware_releases_product_id_products")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_firmware_releases")),
        sa.UniqueConstraint("product_id", "version", name="uq_firmware_releases_product_version"),
    )
    with op.batch_alter_table("firmware_releases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_firmware_releases_product_id"), ["product_id"], unique=False)

    op.create_table(
        "firmware_attachments",
        sa.Column("release_id", sa.String(length=32), nullable=False),
        sa.Column("order_id", sa.String(length=63), nullable=False),
        sa.Column("attached_by", sa.String(length=128), nullable=False),
        sa.Column("attached_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_firmware_attachments_order_id_orders")),
        sa.ForeignKeyConstraint(
            ["release_id"], ["firmware_releases.id"], name=op.f("fk_firmware_attachments_release_id_firmware_releases")
        ),
        sa.PrimaryKeyConstraint("release_id", "order_id", name=op.f("pk_firmware_attachments")),
    )
    with op.batch_alter_table("firmware_attachments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_firmware_attachments_order_id"), ["order_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("firmware_attachments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_firmware_attachments_order_id"))

    op.drop_table("firmware_attachments")
    with op.batch_alter_table("firmware_releases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_firmware_releases_product_id"))

    op.drop_table("firmware_releases")
