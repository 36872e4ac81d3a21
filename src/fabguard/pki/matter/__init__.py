"""Matter (CSA) device attestation certificates: PAA, PAI and DAC, and the rules that bind them.

The profiles follow the Matter Core Specification, section 6.2.2 (Device Attestation Certificate
profiles for the DAC, PAI and PAA) with the common certificate conventions of 6.1, and the offline
part of the attestation information validation in 6.2.3.1. Where the specification leaves a choice,
the choice is one connectedhomeip's verifier (``VerifyAttestationCertificateFormat``) accepts.
"""

from fabguard.pki.matter.chain import check_attestation_certificate, check_attestation_chain
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
from fabguard.pki.matter.issue import dac_certificate, paa_certificate, pai_certificate

__all__ = [
    "OID_PRODUCT_ID",
    "OID_VENDOR_ID",
    "AttestationProfileError",
    "AttestationRole",
    "ProductId",
    "VendorId",
    "attestation_subject",
    "check_attestation_certificate",
    "check_attestation_chain",
    "dac_certificate",
    "paa_certificate",
    "pai_certificate",
    "subject_ids",
]
