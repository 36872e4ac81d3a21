"""orders keep how many units' identities they allocated: the write path read it as a count of the order's
unit_identities rows in every transaction, a cost that grew with the order (issue 28 item 5)

Revision ID: 0030
Revises: 0029
"""

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None

_orders = sa.table("orders", sa.column("id", sa.String), sa.column("identities_allocated", sa.Integer))
_identities = sa.table("unit_identities", sa.column("order_id", sa.String))


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("identities_allocated", sa.Integer(), server_default="0", nullable=False))
    held = (
        sa.select(sa.func.count())
        .select_from(_identities)
        .where(_identities.c.order_id == _orders.c.id)
        .scalar_subquery()
    )
    op.execute(_orders.update().values(identities_allocated=held))


def downgrade() -> None:
    # Plain ALTER TABLE on both engines (SQLite 3.35+): a batch copy of orders would break the foreign keys to it.
    op.execute("ALTER TABLE orders DROP COLUMN identities_allocated")
