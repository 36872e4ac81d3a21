"""auth generation: a counter that every change to who may authenticate bumps (servers' caches check it)

Revision ID: 0027
Revises: 0026
"""

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

_counters = sa.table("counters", sa.column("name", sa.String), sa.column("value", sa.BigInteger))


def upgrade() -> None:
    op.execute(_counters.insert().values(name="auth_generation", value=0))


def downgrade() -> None:
    op.execute(_counters.delete().where(_counters.c.name == "auth_generation"))
