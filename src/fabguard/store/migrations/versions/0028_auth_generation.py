"""auth generation: a counter that every change to who may authenticate bumps (servers' caches check it)

Revision ID: 0028
Revises: 0022
"""

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0022"
branch_labels = None
depends_on = None

_counters = sa.table("counters", sa.column("name", sa.String), sa.column("value", sa.BigInteger))


def upgrade() -> None:
    op.execute(_counters.insert().values(name="auth_generation", value=0))


def downgrade() -> None:
    op.execute(_counters.delete().where(_counters.c.name == "auth_generation"))
