"""record_digests: what the dashboard's samples read of each test record, its measured values and a
failed record's failed steps (issue 28 item 5)

The distribution, an order's capability and the units that failed a step parsed the full JSON of up to
1,000 records per request (3 kB each, most of it units, validators and times): most of their time. A
record's digest (``analytics.record_digest``: ``measured``, ``failed_steps``) is written with it from
now on; this writes one for each record already stored, in batches of ``BATCH`` by id, each read the
way the dashboard read it (``stored_rows`` of its JSON), so the answers do not change. A record without
one is still read from its JSON. A table of its own rather than columns of ``test_records``: a record's
row with its digest is over what an SQLite page holds, and every row took an overflow page (twice the
table's size, measured).

Revision ID: 0031
Revises: 0030
"""

import json

import sqlalchemy as sa
from alembic import op

from fabguard.analytics.record_digest import digest
from fabguard.domain.testrecord import stored_rows

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None

BATCH = 2000
_records = sa.table(
    "test_records", sa.column("id", sa.BigInteger), sa.column("outcome", sa.String), sa.column("record_json", sa.Text)
)
_digests = sa.table(
    "record_digests", sa.column("record_id", sa.BigInteger), sa.column("measured", sa.Text),
    sa.column("failed_steps", sa.Text),
)  # fmt: skip


def _digested(outcome: str, record_json: str) -> dict[str, str | None] | None:
    """The digest of a stored record (None if its JSON is unreadable: the readers skip it anyway)."""
    try:
        phases, measurements = stored_rows(json.loads(record_json))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    failed_steps, measured = digest(phases, measurements, outcome != "PASS")
    return {"failed_steps": failed_steps, "measured": measured}


def upgrade() -> None:
    op.create_table(
        "record_digests",
        sa.Column(
            "record_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False
        ),
        sa.Column("measured", sa.Text(), nullable=False),
        sa.Column("failed_steps", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["record_id"], ["test_records.id"], name=op.f("fk_record_digests_record_id_test_records")
        ),
        sa.PrimaryKeyConstraint("record_id", name=op.f("pk_record_digests")),
    )
    bind = op.get_bind()
    t = _records.c
    last = 0
    while True:
        rows = bind.execute(
            sa.select(t.id, t.outcome, t.record_json).where(t.id > last).order_by(t.id).limit(BATCH)
        ).all()
        if not rows:
            break
        found = [(i, _digested(outcome, body)) for i, outcome, body in rows]
        bind.execute(_digests.insert(), [{"record_id": i, **d} for i, d in found if d is not None])
        last = rows[-1][0]


def downgrade() -> None:
    op.drop_table("record_digests")
