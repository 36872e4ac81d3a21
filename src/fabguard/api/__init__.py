"""HTTP interface: REST under /api/v1, errors as {"error": {"code", "message"}}."""
