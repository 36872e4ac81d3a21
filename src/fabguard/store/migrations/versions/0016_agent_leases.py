"""agent leases: quota leases granted to offline site agents

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quota_leases",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("order_id", sa.String(length=63), nullable=False),
        sa.Column("site_id", sa.String(length=63), nullable=False),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issued_by", sa.String(length=128), nullable=False),
        sa.Column("agent_ca", sa.String(length=63), nullable=False),
        sa.Column("agent_ca_sha256", sa.String(length=64), nullable=False),
        sa.Column("agent_ledger_key", sa.String(length=300), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("bundle", sa.Text(), nullable=False),
        sa.Column("synced_size", sa.BigInteger(), nullable=False),
        sa.Column("synced_root", sa.LargeBinary(length=32), nullable=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("units_synced", sa.Integer(), nullable=False),
        sa.Column("discrepancy", sa.Text(), nullable=True),
        sa.CheckConstraint("units > 0", name=op.f("ck_quota_leases_units_positive")),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_quota_leases_order_id_orders")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quota_leases")),
        sa.UniqueConstraint("agent_ca_sha256", name=op.f("uq_quota_leases_agent_ca_sha256")),
    )
    with op.batch_alter_table("quota_leases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_quota_leases_order_id"), ["order_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("quota_leases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quota_leases_order_id"))
    op.drop_table("quota_leases")
