"""The HTTP interface: FastAPI routers under /api/v1, request parsing into value objects, auth, error mapping.

Errors are sent as ``{"error": {"code", "message"}}``. It may import ``fabguard.service``,
``fabguard.runtime``, ``fabguard.domain``, ``fabguard.pki``, ``fabguard.ledger`` (values),
``fabguard.firmware`` and ``fabguard.web`` (the static files it serves); never ``fabguard.store`` or
``fabguard.analytics`` directly: a router reaches the database and the analytics only through a service.
"""
