"""Persistence: SQLAlchemy models, the database handle, the event log, migrations, leases. SQLite and PostgreSQL.

Every SQL statement (engine-specific upserts included) lives here, and every function works in the
caller's transaction. It may import ``fabguard.domain``, ``fabguard.ledger`` (the leaf encoding and
hashing of the event log) and the value types of ``fabguard.analytics``; nothing above it (service, api,
cli) and no policy: what to store is decided by the service layer.
"""
