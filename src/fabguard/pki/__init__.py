"""Certificates and keys: certificate profiles, CSR checks, CRLs, EST wire formats and the key backends.

It may import only ``fabguard.domain`` (values such as ``Serial`` and the error root); which CA an
instance uses and where its keys live is decided by the service layer, which passes them in.
"""
