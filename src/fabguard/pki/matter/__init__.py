"""Matter (CSA) device attestation certificates: PAA, PAI and DAC, and the rules that bind them.

The profiles follow the Matter Core Specification, section 6.2.2 (Device Attestation Certificate
profiles for the DAC, PAI and PAA) with the common certificate conventions of 6.1, and the offline
part of the attestation information validation in 6.2.3.1. Where the specification leaves a choice,
the choice is one connectedhomeip's verifier (``VerifyAttestationCertificateFormat``) accepts.

Also each unit's onboarding data (5.1): setup passcode, discriminator, QR and manual pairing codes,
and the SPAKE2+ verifier (3.10) the device keeps.
"""

from fabguard.pki.matter.chain import check_attestation_certificate, check_attestation_chain
from fabguard.pki.matter.commissioning import UnitCommissioning
from fabguard.pki.matter.identity import (
    OID_PRODUCT_ID,
    OID_VENDOR_ID,
    AttestationProfileError,
    AttestationRole,
    ProductId,
    VendorId,
    attestation_subject,
    subject_ids,
)
from fabguard.pki.matter.issue import DacProfile, dac_certificate, paa_certificate, pai_certificate
from fabguard.pki.matter.onboarding import (
    CommissioningFlow,
    DiscoveryCapability,
    Discriminator,
    OnboardingPayload,
    SetupPasscode,
)
from fabguard.pki.matter.spake2p import Spake2pParameters, spake2p_verifier

__all__ = [
    "OID_PRODUCT_ID",
    "OID_VENDOR_ID",
    "AttestationProfileError",
    "AttestationRole",
    "CommissioningFlow",
    "DacProfile",
    "DiscoveryCapability",
    "Discriminator",
    "OnboardingPayload",
    "ProductId",
    "SetupPasscode",
    "Spake2pParameters",
    "UnitCommissioning",
    "VendorId",
    "attestation_subject",
    "check_attestation_certificate",
    "check_attestation_chain",
    "dac_certificate",
    "paa_certificate",
    "pai_certificate",
    "spake2p_verifier",
    "subject_ids",
]
