"""certificate authority registry

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "certificate_authorities",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("site_id", sa.String(length=63), nullable=True),
        sa.Column("product_id", sa.String(length=63), nullable=True),
        sa.Column("key_ref", sa.String(length=200), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=True),
        sa.Column("csr_pem", sa.Text(), nullable=True),
        sa.Column("cert_serial", sa.String(length=48), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revocation_reason", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_certificate_authorities")),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("issuing_ca", sa.String(length=63), server_default="issuing", nullable=False))

    with op.batch_alter_table("units", schema=None) as batch_op:
        batch_op.add_column(sa.Column("issuing_ca", sa.String(length=63), server_default="issuing", nullable=False))
        batch_op.create_index(batch_op.f("ix_units_issuing_ca"), ["issuing_ca"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("units", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_units_issuing_ca"))
        batch_op.drop_column("issuing_ca")

    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("issuing_ca")

    op.drop_table("certificate_authorities")
