"""Certificates and keys: CA hierarchy, profiles, CSR checks, key storage."""
