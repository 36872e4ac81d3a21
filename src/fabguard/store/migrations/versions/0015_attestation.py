"""attestation: a product's key-attestation policy, its trusted roots, and what backed each unit

Existing products get the policy ``off``: nothing they do changes. Existing units have no attestation.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "products", sa.Column("attestation_policy", sa.String(length=16), server_default="off", nullable=False)
    )
    op.add_column("units", sa.Column("attestation", sa.Text(), nullable=True))
    op.create_table(
        "attestation_roots",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("product_id", sa.String(length=63), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        sa.Column("added_by", sa.String(length=128), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('tpm', 'se')", name=op.f("ck_attestation_roots_kind_known")),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name=op.f("fk_attestation_roots_product_id_products")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attestation_roots")),
        sa.UniqueConstraint("product_id", "kind", "sha256", name="uq_attestation_roots_product_kind_sha256"),
    )
    with op.batch_alter_table("attestation_roots", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_attestation_roots_product_id"), ["product_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("attestation_roots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_attestation_roots_product_id"))
    op.drop_table("attestation_roots")
    with op.batch_alter_table("units") as batch:
        batch.drop_column("attestation")
    with op.batch_alter_table("products") as batch:
        batch.drop_column("attestation_policy")
