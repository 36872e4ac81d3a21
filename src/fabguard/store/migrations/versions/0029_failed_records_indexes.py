"""failed test records by time, by fixture and by site: partial indexes (issue 28 item 5)

The dashboard's "units that failed a step" reads the newest failed records of a range, of a station or
of a site. Through ``ix_test_records_received_at`` it had to step over every passing record in between
(about 30 per failed one at a 3% failure rate, 8 times more for one station of eight), and PostgreSQL
chose a sequential scan of the whole table for one station. These indexes hold the failed records alone
(a few percent of the rows, so they cost little to keep).

Revision ID: 0029
Revises: 0028
"""

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None

FAILED = "outcome != 'PASS'"
INDEXES = {
    "ix_test_records_failed_received_at": ["received_at"],
    "ix_test_records_failed_fixture": ["fixture_id", "received_at"],
    "ix_test_records_failed_site": ["site_id", "received_at"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(
            name,
            "test_records",
            columns,
            unique=False,
            sqlite_where=sa.text(FAILED),
            postgresql_where=sa.text(FAILED),
        )


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="test_records")
