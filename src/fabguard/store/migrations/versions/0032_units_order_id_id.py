"""units (order_id, id): an order's newest units are one index range (issue 28 item 5)

The order page, its units listing (``GET /orders/{id}/units``, ``fabguard units list --order``) and the
dashboard's sample of an order's units read "the units of order O by id" (newest first, or after an id).
Through ``ix_units_order_id`` PostgreSQL read every unit of the order and sorted them, or walked the
primary key backwards filtering on the order (every newer unit of other orders first, for an old order).
``(order_id, id)`` answers the same reads in order; it also serves every read of ``ix_units_order_id`` (its
leading column), which is dropped. On SQLite ``id`` is the rowid, which every index already ends with: the
same plans, under the new name.

Revision ID: 0032
Revises: 0031
"""

from alembic import op

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("units", schema=None) as batch_op:
        batch_op.create_index("ix_units_order_id_id", ["order_id", "id"], unique=False)
        batch_op.drop_index("ix_units_order_id")


def downgrade() -> None:
    with op.batch_alter_table("units", schema=None) as batch_op:
        batch_op.create_index("ix_units_order_id", ["order_id"], unique=False)
        batch_op.drop_index("ix_units_order_id_id")
