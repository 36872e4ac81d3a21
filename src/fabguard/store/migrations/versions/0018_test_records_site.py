"""test records bound to a site: the uploading fixture's site decides, the declared station is kept aside

A test record decides only the units of orders at the site of the fixture that uploaded it (issue 23).
``site_id`` is that site, filled for the records already stored from their fixtures (a fixture never
changes site); the index the test gate reads through becomes (serial, site_id, id). The body's
``station_id`` was never the record's station (the uploading fixture is): it is renamed
``declared_station_id``.

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("test_records", sa.Column("site_id", sa.String(length=63), nullable=True))
    op.execute(
        "UPDATE test_records SET site_id = (SELECT fixtures.site_id FROM fixtures WHERE fixtures.id = test_records.fixture_id)"
    )
    with op.batch_alter_table("test_records", schema=None) as batch_op:
        batch_op.alter_column("site_id", existing_type=sa.String(length=63), nullable=False)
        batch_op.alter_column("station_id", new_column_name="declared_station_id", existing_type=sa.String(length=128))
        batch_op.create_foreign_key(op.f("fk_test_records_site_id_sites"), "sites", ["site_id"], ["id"])
        batch_op.drop_index("ix_test_records_serial_id")
        batch_op.create_index("ix_test_records_serial_site_id", ["serial", "site_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("test_records", schema=None) as batch_op:
        batch_op.drop_index("ix_test_records_serial_site_id")
        batch_op.create_index("ix_test_records_serial_id", ["serial", "id"], unique=False)
        batch_op.drop_constraint(op.f("fk_test_records_site_id_sites"), type_="foreignkey")
        batch_op.alter_column("declared_station_id", new_column_name="station_id", existing_type=sa.String(length=128))
        batch_op.drop_column("site_id")
