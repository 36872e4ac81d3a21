"""The tamper-evident ledger: RFC 9162 Merkle hashing, proofs, signed checkpoints, offline verification.

Pure functions over bytes and hashes; it may import only ``fabguard.domain`` (the error root). ``merkle``,
``checkpoint`` and ``verify`` import nothing from the server side, so an auditor can run them with only
``cryptography`` installed; the database that stores the tree is ``fabguard.store``'s.
"""
