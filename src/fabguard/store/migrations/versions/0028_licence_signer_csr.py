"""licence signer CSR: a pending licence signer's CSR in a column of its own, its certificate NULL until imported

Until now an offline root's signer waiting for its ceremony kept its CSR in ``certificate_pem``, told apart
by the PEM header. Those rows move their CSR to ``csr_pem`` and have no certificate; a check keeps every
row holding one or the other.

Revision ID: 0028
Revises: 0027
"""

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None

CSR_HEADER = "-----BEGIN CERTIFICATE REQUEST-----"
_signers = sa.table("licence_signing_keys", sa.column("certificate_pem", sa.Text), sa.column("csr_pem", sa.Text))


def upgrade() -> None:
    with op.batch_alter_table("licence_signing_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("csr_pem", sa.Text(), nullable=True))
        batch_op.alter_column("certificate_pem", existing_type=sa.Text(), nullable=True)
    pending = _signers.c.certificate_pem.like(f"{CSR_HEADER}%")
    op.execute(_signers.update().where(pending).values(csr_pem=_signers.c.certificate_pem, certificate_pem=None))
    with op.batch_alter_table("licence_signing_keys", schema=None) as batch_op:
        batch_op.create_check_constraint(
            op.f("ck_licence_signing_keys_certificate_or_csr"), "certificate_pem IS NOT NULL OR csr_pem IS NOT NULL"
        )


def downgrade() -> None:
    # A pending signer's CSR goes back where the older release looks for it; a certified signer's CSR goes.
    with op.batch_alter_table("licence_signing_keys", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_licence_signing_keys_certificate_or_csr"), type_="check")
    op.execute(_signers.update().where(_signers.c.certificate_pem.is_(None)).values(certificate_pem=_signers.c.csr_pem))
    with op.batch_alter_table("licence_signing_keys", schema=None) as batch_op:
        batch_op.alter_column("certificate_pem", existing_type=sa.Text(), nullable=False)
        batch_op.drop_column("csr_pem")
