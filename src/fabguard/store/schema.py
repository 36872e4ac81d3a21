"""The whole schema: every table module imported, so ``metadata`` holds all tables (Alembic compares against it)."""

from __future__ import annotations

from sqlalchemy import MetaData

from fabguard.store import (
    analytics_models,
    approval_models,
    attestation_models,
    field_models,
    firmware_models,
    idempotency,
    identity_models,
    licence_models,
    models,
    people_models,
    quota_leases,
    royalty_models,
    session_models,
    witness_models,
)
from fabguard.store.base import Base

__all__ = ["MODEL_MODULES", "metadata"]

# Importing a model module registers its tables on the shared base; naming them here keeps the imports used.
MODEL_MODULES = (
    people_models,
    models,
    analytics_models,
    firmware_models,
    idempotency,
    approval_models,
    witness_models,
    royalty_models,
    licence_models,
    field_models,
    attestation_models,
    quota_leases,
    identity_models,
    session_models,
)
metadata: MetaData = Base.metadata
