"""hourly rollups: stats, yield and failures per hour, filled from the minute rollups

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "failure_hours",
        sa.Column("hour", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("site_id", sa.String(length=63), nullable=False),
        sa.Column("order_id", sa.String(length=63), nullable=False),
        sa.Column("fixture_id", sa.String(length=63), nullable=False),
        sa.Column("phase", sa.String(length=128), nullable=False),
        sa.Column("measurement", sa.String(length=128), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "hour", "site_id", "order_id", "fixture_id", "phase", "measurement", name=op.f("pk_failure_hours")
        ),
    )
    op.create_table(
        "stats_hours",
        sa.Column("hour", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("site_id", sa.String(length=63), nullable=False),
        sa.Column("order_id", sa.String(length=63), nullable=False),
        sa.Column("fixture_id", sa.String(length=63), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "hour", "kind", "code", "site_id", "order_id", "fixture_id", name=op.f("pk_stats_hours")
        ),
    )
    op.create_table(
        "yield_hours",
        sa.Column("hour", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("site_id", sa.String(length=63), nullable=False),
        sa.Column("order_id", sa.String(length=63), nullable=False),
        sa.Column("fixture_id", sa.String(length=63), nullable=False),
        sa.Column("units", sa.BigInteger(), nullable=False),
        sa.Column("tests", sa.BigInteger(), nullable=False),
        sa.Column("first_pass", sa.BigInteger(), nullable=False),
        sa.Column("final_pass", sa.BigInteger(), nullable=False),
        sa.Column("retested", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("hour", "site_id", "order_id", "fixture_id", name=op.f("pk_yield_hours")),
    )

    # A deployment upgraded from 0006 has projected minute rollups already: the hours are their sums
    # (minutes are epoch minutes, never negative, in integer columns: "/" is integer division on both
    # SQLite and PostgreSQL).
    op.execute(
        'INSERT INTO "failure_hours" ("hour", "site_id", "order_id", "fixture_id", "phase", "measurement", "n") '
        'SELECT "minute" / 60, "site_id", "order_id", "fixture_id", "phase", "measurement", SUM("n") '
        'FROM "failure_minutes" '
        'GROUP BY "minute" / 60, "site_id", "order_id", "fixture_id", "phase", "measurement"'
    )
    op.execute(
        'INSERT INTO "stats_hours" ("hour", "kind", "code", "site_id", "order_id", "fixture_id", "n") '
        'SELECT "minute" / 60, "kind", "code", "site_id", "order_id", "fixture_id", SUM("n") '
        'FROM "stats_minutes" '
        'GROUP BY "minute" / 60, "kind", "code", "site_id", "order_id", "fixture_id"'
    )
    op.execute(
        'INSERT INTO "yield_hours" '
        '("hour", "site_id", "order_id", "fixture_id", "units", "tests", "first_pass", "final_pass", "retested") '
        'SELECT "minute" / 60, "site_id", "order_id", "fixture_id", '
        'SUM("units"), SUM("tests"), SUM("first_pass"), SUM("final_pass"), SUM("retested") '
        'FROM "yield_minutes" '
        'GROUP BY "minute" / 60, "site_id", "order_id", "fixture_id"'
    )


def downgrade() -> None:

    op.drop_table("yield_hours")
    op.drop_table("stats_hours")
    op.drop_table("failure_hours")
