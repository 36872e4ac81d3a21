"""The tamper-evident ledger: RFC 9162 Merkle hashing, proofs, signed checkpoints, offline verification.

``merkle``, ``checkpoint`` and ``verify`` are pure and import nothing from the server side, so an
auditor can run them with only ``cryptography`` installed.
"""
