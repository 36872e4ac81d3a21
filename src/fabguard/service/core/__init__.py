"""What every slice stands on: the instance (configuration, database, keys, CA registry), limits, events and idempotency keys. Imports no slice."""
