"""Use cases: each ties domain decisions, keys and storage together in one transaction, and stays thin.

It may import ``fabguard.domain``, ``fabguard.ledger``, ``fabguard.pki``, ``fabguard.firmware``,
``fabguard.analytics`` and ``fabguard.store``; never ``api``, ``cli`` or the background workers of
``fabguard.runtime``, which call it. Decisions belong in ``domain`` (or ``analytics``), SQL in ``store``.
"""
