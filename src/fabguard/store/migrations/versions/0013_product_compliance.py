"""product compliance: each product's end of support and its vulnerability contact (CRA evidence)

Both are optional: products made before this migration have neither until an engineer sets them
(``fabguard product set``, ``PATCH /api/v1/products/{id}``).

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("products", sa.Column("support_until", sa.Date(), nullable=True))
    op.add_column("products", sa.Column("vulnerability_contact", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("products") as batch:
        batch.drop_column("vulnerability_contact")
        batch.drop_column("support_until")
