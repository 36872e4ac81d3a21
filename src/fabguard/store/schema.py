"""The whole schema: every table module imported, so ``metadata`` holds all tables (Alembic compares against it)."""

from __future__ import annotations

from sqlalchemy import MetaData

from fabguard.store import analytics_models, approval_models, firmware_models, idempotency, models, quota_leases
from fabguard.store.base import Base

__all__ = ["MODEL_MODULES", "metadata"]

# Importing a model module registers its tables on the shared base; naming them here keeps the imports used.
MODEL_MODULES = (models, analytics_models, firmware_models, idempotency, approval_models, quota_leases)
metadata: MetaData = Base.metadata
