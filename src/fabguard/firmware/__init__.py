"""Encrypted firmware: images sealed at rest, signed manifests, SBOMs and MCUboot images.

``envelope`` is the crypto (pure, ``cryptography`` only), ``sbom`` the CycloneDX document of a release,
``policy`` the per-unit release decision and ``mcuboot`` the images a product's bootloader takes. It may
import ``fabguard.domain`` and ``fabguard.pki``, nothing else of ours; releases are stored by
``fabguard.service``, and the device's side is :mod:`fabguard.fixture.firmware`.
"""
