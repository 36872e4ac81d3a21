"""field checks: single-use challenge nonces and the outcome of every genuineness check

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "field_nonces",
        sa.Column("nonce_sha256", sa.String(length=64), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("issued_to", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("nonce_sha256", name=op.f("pk_field_nonces")),
    )
    with op.batch_alter_table("field_nonces", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_field_nonces_expires_at"), ["expires_at"], unique=False)
    op.create_table(
        "field_checks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=True),
        sa.Column("cert_sha256", sa.String(length=64), nullable=False),
        sa.Column("genuine", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("clone", sa.String(length=16), nullable=True),
        sa.Column("place", sa.String(length=128), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=True),
        sa.Column("client", sa.String(length=64), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_field_checks")),
    )
    with op.batch_alter_table("field_checks", schema=None) as batch_op:
        batch_op.create_index("ix_field_checks_serial_at", ["serial", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("field_checks", schema=None) as batch_op:
        batch_op.drop_index("ix_field_checks_serial_at")
    op.drop_table("field_checks")
    with op.batch_alter_table("field_nonces", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_field_nonces_expires_at"))
    op.drop_table("field_nonces")
