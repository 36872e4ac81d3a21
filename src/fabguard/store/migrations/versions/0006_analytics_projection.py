"""analytics projection: rollups, unit tests, alerts, detector state, leases

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "alerts",
        sa.Column("id", sa.String(length=80), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("severity", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("order_id", sa.String(length=63), nullable=True),
        sa.Column("site_id", sa.String(length=63), nullable=True),
        sa.Column("fixture_id", sa.String(length=63), nullable=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("acked_by", sa.String(length=128), nullable=True),
        sa.Column("acked_up_to", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index("ix_alerts_last_seq", ["last_seq"], unique=False)

    op.create_table(
        "analytics_state",
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_analytics_state")),
    )
    op.create_table(
        "failure_minutes",
        sa.Column("minute", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("site_id", sa.String(length=63), nullable=False),
        sa.Column("order_id", sa.String(length=63), nullable=False),
        sa.Column("fixture_id", sa.String(length=63), nullable=False),
        sa.Column("phase", sa.String(length=128), nullable=False),
        sa.Column("measurement", sa.String(length=128), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "minute", "site_id", "order_id", "fixture_id", "phase", "measurement", name=op.f("pk_failure_minutes")
        ),
    )
    op.create_table(
        "fixture_activity",
        sa.Column("fixture_id", sa.String(length=63), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("fixture_id", name=op.f("pk_fixture_activity")),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    op.create_table(
        "measurement_hours",
        sa.Column("hour", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("site_id", sa.String(length=63), nullable=False),
        sa.Column("order_id", sa.String(length=63), nullable=False),
        sa.Column("fixture_id", sa.String(length=63), nullable=False),
        sa.Column("phase", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.Float(), nullable=False),
        sa.Column("total_sq", sa.Float(), nullable=False),
        sa.Column("low", sa.Float(), nullable=False),
        sa.Column("high", sa.Float(), nullable=False),
        sa.Column("mr_total", sa.Float(), nullable=False),
        sa.Column("mr_n", sa.BigInteger(), nullable=False),
        sa.Column("fails", sa.BigInteger(), nullable=False),
        sa.Column("lower", sa.Float(), nullable=True),
        sa.Column("upper", sa.Float(), nullable=True),
        sa.Column("ref", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "hour", "site_id", "order_id", "fixture_id", "phase", "name", name=op.f("pk_measurement_hours")
        ),
    )
    op.create_table(
        "stats_minutes",
        sa.Column("minute", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("site_id", sa.String(length=63), nullable=False),
        sa.Column("order_id", sa.String(length=63), nullable=False),
        sa.Column("fixture_id", sa.String(length=63), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "minute", "kind", "code", "site_id", "order_id", "fixture_id", name=op.f("pk_stats_minutes")
        ),
    )
    op.create_table(
        "stats_totals",
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("site_id", sa.String(length=63), nullable=False),
        sa.Column("order_id", sa.String(length=63), nullable=False),
        sa.Column("fixture_id", sa.String(length=63), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "code", "site_id", "order_id", "fixture_id", name=op.f("pk_stats_totals")),
    )
    op.create_table(
        "test_vectors",
        sa.Column("digest", sa.String(length=32), nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("record_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_test_vectors")),
    )
    op.create_table(
        "unit_tests",
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("site_id", sa.String(length=63), nullable=False),
        sa.Column("order_id", sa.String(length=63), nullable=False),
        sa.Column("fixture_id", sa.String(length=63), nullable=False),
        sa.Column("first_minute", sa.Integer(), nullable=False),
        sa.Column("tests", sa.Integer(), nullable=False),
        sa.Column("first_outcome", sa.String(length=16), nullable=False),
        sa.Column("last_outcome", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("serial", name=op.f("pk_unit_tests")),
    )
    op.create_table(
        "yield_minutes",
        sa.Column("minute", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("site_id", sa.String(length=63), nullable=False),
        sa.Column("order_id", sa.String(length=63), nullable=False),
        sa.Column("fixture_id", sa.String(length=63), nullable=False),
        sa.Column("units", sa.BigInteger(), nullable=False),
        sa.Column("tests", sa.BigInteger(), nullable=False),
        sa.Column("first_pass", sa.BigInteger(), nullable=False),
        sa.Column("final_pass", sa.BigInteger(), nullable=False),
        sa.Column("retested", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("minute", "site_id", "order_id", "fixture_id", name=op.f("pk_yield_minutes")),
    )


def downgrade() -> None:

    op.drop_table("yield_minutes")
    op.drop_table("unit_tests")
    op.drop_table("test_vectors")
    op.drop_table("stats_totals")
    op.drop_table("stats_minutes")
    op.drop_table("measurement_hours")
    op.drop_table("leases")
    op.drop_table("fixture_activity")
    op.drop_table("failure_minutes")
    op.drop_table("analytics_state")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_alerts_last_seq")

    op.drop_table("alerts")
