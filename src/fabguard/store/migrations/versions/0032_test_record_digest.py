"""test records keep what the dashboard's samples read: their measured values and a failed record's
failed steps, as narrow columns (issue 28 item 5)

The distribution, an order's capability and the units that failed a step parsed the full JSON of up to
1,000 records per request (3 kB each, most of it units, validators and times): most of their time.
``measured`` and ``failed_steps`` (``analytics.record_digest``) are written with each record from now on;
this fills them in for the records already stored, in batches of ``BATCH`` by id, each read the way the
dashboard read it (``stored_rows`` of its JSON), so the answers do not change. A record left without
them (``measured`` null) is still read from its JSON.

Revision ID: 0032
Revises: 0030
"""

import json

import sqlalchemy as sa
from alembic import op

from fabguard.analytics.record_digest import digest
from fabguard.domain.testrecord import stored_rows

revision = "0032"
down_revision = "0030"
branch_labels = None
depends_on = None

BATCH = 2000
_records = sa.table(
    "test_records",
    sa.column("id", sa.BigInteger),
    sa.column("outcome", sa.String),
    sa.column("record_json", sa.Text),
    sa.column("measured", sa.Text),
    sa.column("failed_steps", sa.Text),
)


def _digested(outcome: str, record_json: str) -> dict[str, str | None]:
    try:
        phases, measurements = stored_rows(json.loads(record_json))
    except (ValueError, KeyError, TypeError, AttributeError):  # unreadable: left to the readers, who skip it
        return {"failed_steps": None, "measured": None}
    failed_steps, measured = digest(phases, measurements, outcome != "PASS")
    return {"failed_steps": failed_steps, "measured": measured}


def upgrade() -> None:
    # Plain ADD COLUMN (nullable, no default) on both engines: no copy of the table.
    op.add_column("test_records", sa.Column("measured", sa.Text(), nullable=True))
    op.add_column("test_records", sa.Column("failed_steps", sa.Text(), nullable=True))
    bind = op.get_bind()
    t = _records.c
    update = (
        _records.update()
        .where(t.id == sa.bindparam("row_id"))
        .values(measured=sa.bindparam("measured"), failed_steps=sa.bindparam("failed_steps"))
    )
    last = 0
    while True:
        rows = bind.execute(
            sa.select(t.id, t.outcome, t.record_json).where(t.id > last).order_by(t.id).limit(BATCH)
        ).all()
        if not rows:
            break
        bind.execute(update, [{"row_id": i, **_digested(outcome, body)} for i, outcome, body in rows])
        last = rows[-1][0]


def downgrade() -> None:
    op.drop_column("test_records", "failed_steps")
    op.drop_column("test_records", "measured")
