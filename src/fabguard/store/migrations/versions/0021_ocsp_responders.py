"""ocsp responders: each CA's delegated OCSP responder certificates and their keys' references

Revision ID: 0021
Revises: 0020
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ocsp_responders",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("ca", sa.String(length=63), nullable=False),
        sa.Column("key_ref", sa.String(length=200), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        sa.Column("cert_serial", sa.String(length=48), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ocsp_responders")),
    )
    with op.batch_alter_table("ocsp_responders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ocsp_responders_ca"), ["ca"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ocsp_responders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ocsp_responders_ca"))
    op.drop_table("ocsp_responders")
