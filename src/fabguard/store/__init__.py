"""Persistence: SQLAlchemy models, the database handle, migrations. SQLite and PostgreSQL."""
