"""key rotation: the ledger's chain of checkpoint keys; several licence signers per product, retired or revoked

Revision ID: 0023
Revises: 0022
"""

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

_BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ledger_keys",
        sa.Column("generation", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("key_ref", sa.String(length=200), nullable=False),
        sa.Column("verifier", sa.Text(), nullable=False),
        sa.Column("from_size", _BIG, nullable=False),
        sa.Column("until_size", _BIG, nullable=True),
        sa.Column("endorsement", sa.Text(), nullable=True),
        sa.Column("retirement", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("generation", name=op.f("pk_ledger_keys")),
    )
    op.create_table(
        "licence_signing_keys",
        sa.Column("id", _BIG, autoincrement=True, nullable=False),
        sa.Column("product_id", sa.String(length=63), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("key_ref", sa.String(length=200), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revocation_reason", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_licence_signing_keys_product_id_products")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_licence_signing_keys")),
        sa.UniqueConstraint("product_id", "generation", name=op.f("uq_licence_signing_keys_product_id")),
    )
    op.execute(
        "INSERT INTO licence_signing_keys (product_id, generation, key_ref, certificate_pem, created_at) "
        "SELECT product_id, 1, key_ref, certificate_pem, created_at FROM licence_signers"
    )
    op.drop_table("licence_signers")


def downgrade() -> None:
    op.create_table(
        "licence_signers",
        sa.Column("product_id", sa.String(length=63), nullable=False),
        sa.Column("key_ref", sa.String(length=200), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name=op.f("fk_licence_signers_product_id_products")),
        sa.PrimaryKeyConstraint("product_id", name=op.f("pk_licence_signers")),
    )
    # The newest signer of each product that still signs is the one an older release knows.
    op.execute(
        "INSERT INTO licence_signers (product_id, key_ref, certificate_pem, created_at) "
        "SELECT k.product_id, k.key_ref, k.certificate_pem, k.created_at FROM licence_signing_keys k "
        "WHERE k.revoked_at IS NULL AND k.retired_at IS NULL"
    )
    op.drop_table("licence_signing_keys")
    op.drop_table("ledger_keys")
