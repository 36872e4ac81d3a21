"""superseded certificates: a unit's certificates replaced by re-enrolment, revoked as superseded

Revision ID: 0022
Revises: 0021
"""

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "superseded_certificates",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("cert_serial", sa.String(length=48), nullable=False),
        sa.Column("issuing_ca", sa.String(length=63), nullable=False),
        sa.Column("product_id", sa.String(length=63), nullable=False),
        sa.Column("unit_serial", sa.String(length=64), nullable=False),
        sa.Column("cert_sha256", sa.String(length=64), nullable=False),
        sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_superseded_certificates")),
        sa.UniqueConstraint("cert_serial", name=op.f("uq_superseded_certificates_cert_serial")),
    )
    with op.batch_alter_table("superseded_certificates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_superseded_certificates_issuing_ca"), ["issuing_ca"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("superseded_certificates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_superseded_certificates_issuing_ca"))
    op.drop_table("superseded_certificates")
