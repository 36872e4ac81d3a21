"""field checks without events: a genuine check with no clone signal is a field_checks row only (ADR 0015)

Revision ID: 0024
Revises: 0023
"""

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("field_checks", schema=None) as batch_op:
        batch_op.alter_column("seq", existing_type=sa.BigInteger(), nullable=True)


def downgrade() -> None:
    # The checks recorded without an event have no sequence number to give back: they go.
    op.execute("DELETE FROM field_checks WHERE seq IS NULL")
    with op.batch_alter_table("field_checks", schema=None) as batch_op:
        batch_op.alter_column("seq", existing_type=sa.BigInteger(), nullable=False)
