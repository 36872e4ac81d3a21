"""indexes for analytics

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_kind_seq", ["kind", "seq"], unique=False)

    with op.batch_alter_table("test_records", schema=None) as batch_op:
        batch_op.create_index("ix_test_records_received_at", ["received_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("test_records", schema=None) as batch_op:
        batch_op.drop_index("ix_test_records_received_at")

    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_kind_seq")
