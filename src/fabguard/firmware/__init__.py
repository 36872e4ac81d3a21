"""Encrypted firmware: images sealed at rest, manifests signed, data keys released to one unit at a time.

``envelope`` is the crypto (pure, ``cryptography`` only), ``sbom`` the CycloneDX document of a release,
``policy`` the per-unit release decision. The device's side is :mod:`fabguard.fixture.firmware`.
"""
