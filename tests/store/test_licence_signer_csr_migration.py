"""Migration 0028 gives a pending licence signer's CSR a column of its own: a row that held its CSR in
``certificate_pem`` (an offline root's signer waiting for its ceremony) has it in ``csr_pem`` and no
certificate; a certified signer is untouched. The downgrade puts the CSR back. Both engines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from fabguard.domain.values import ProductId
from fabguard.service.catalog import product_catalog
from fabguard.service.core.instance import Instance
from fabguard.store.migrate import alembic_config

pytestmark = pytest.mark.migrations

REVISION = "0028"
NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sensor licences")])


def _migrate(inst: Instance, revision: str, *, down: bool = False) -> None:
    with inst.db.engine.begin() as conn:
        cfg = alembic_config(inst.db)
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)


def _before(inst: Instance) -> str:
    """The revision this migration follows (whatever it is once the migrations are chained)."""
    down = ScriptDirectory.from_config(alembic_config(inst.db)).get_revision(REVISION).down_revision
    assert isinstance(down, str)
    return down


def _pems() -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(NAME).sign(key, hashes.SHA256())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(NAME)
        .issuer_name(NAME)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return cert.public_bytes(pem).decode(), csr.public_bytes(pem).decode()


def _rows(inst: Instance, columns: str) -> list[tuple[object, ...]]:
    with inst.db.engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(text(f"SELECT generation, {columns} FROM licence_signing_keys ORDER BY generation"))
        ]


def test_a_pending_signers_csr_moves_to_its_own_column_and_back(any_instance: Instance) -> None:
    inst = any_instance
    product_catalog.create_product(inst, product_id=ProductId("sensor"), name="Sensor", actor="test")
    cert_pem, csr_pem = _pems()
    before = _before(inst)
    _migrate(inst, before, down=True)
    with inst.db.engine.begin() as conn:
        for generation, pem in ((1, cert_pem), (2, csr_pem)):
            conn.execute(
                text(
                    "INSERT INTO licence_signing_keys (product_id, generation, key_ref, certificate_pem, created_at)"
                    " VALUES ('sensor', :g, :k, :p, :t)"
                ),
                {"g": generation, "k": f"file:licence-sensor-{generation}", "p": pem, "t": datetime.now(UTC)},
            )

    _migrate(inst, "head")
    assert _rows(inst, "certificate_pem, csr_pem") == [(1, cert_pem, None), (2, None, csr_pem)]
    with pytest.raises(IntegrityError), inst.db.engine.begin() as conn:  # neither a certificate nor a CSR
        conn.execute(text("UPDATE licence_signing_keys SET csr_pem = NULL WHERE generation = 2"))

    _migrate(inst, before, down=True)
    assert _rows(inst, "certificate_pem") == [(1, cert_pem), (2, csr_pem)]
    _migrate(inst, "head")
