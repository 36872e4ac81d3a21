"""Use cases: each ties domain decisions, keys and storage together in one transaction."""
