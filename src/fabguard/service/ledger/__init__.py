"""The ledger as the server keeps it: checkpoints, proofs, export, witnesses and reconciliation reports."""
