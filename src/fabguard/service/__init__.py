"""Use cases: each ties domain decisions, keys and storage together in one transaction, and stays thin.

Cut by feature into slices (``core`` and one sub-package per feature, ADR 0013; docs/architecture.md
names each slice and the siblings it may import).

It may import ``fabguard.domain``, ``fabguard.ledger``, ``fabguard.pki``, ``fabguard.firmware``,
``fabguard.analytics`` and ``fabguard.store``; never ``api``, ``cli`` or the background workers of
``fabguard.runtime``, which call it. Decisions belong in ``domain`` (or ``analytics``), SQL in ``store``.
"""
