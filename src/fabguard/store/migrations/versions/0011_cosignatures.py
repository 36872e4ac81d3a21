"""cosignatures: witnesses (CM sites' cosigner keys) and their cosignatures of checkpoints

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "witness_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("key_id", sa.LargeBinary(length=4), nullable=False),
        sa.Column("verifier_key", sa.Text(), nullable=False),
        sa.Column("site_id", sa.String(length=63), nullable=False),
        sa.Column("registered_by", sa.String(length=128), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_witness_keys_site_id_sites")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_witness_keys")),
        sa.UniqueConstraint("name", "key_id", name=op.f("uq_witness_keys_name")),
    )
    op.create_table(
        "cosignatures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("checkpoint_size", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("witness_id", sa.Integer(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["checkpoint_size"], ["checkpoints.size"], name=op.f("fk_cosignatures_checkpoint_size_checkpoints")
        ),
        sa.ForeignKeyConstraint(
            ["witness_id"], ["witness_keys.id"], name=op.f("fk_cosignatures_witness_id_witness_keys")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cosignatures")),
        sa.UniqueConstraint("checkpoint_size", "witness_id", name=op.f("uq_cosignatures_checkpoint_size")),
    )


def downgrade() -> None:
    op.drop_table("cosignatures")
    op.drop_table("witness_keys")
