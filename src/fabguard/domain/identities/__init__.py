"""Unique identities the OEM allocates to units: serials of a format, MAC addresses from an IEEE block.

Pure values: which n a unit gets is the pools' business (allocated under the order's quota, in the
ledger); these say what the n-th serial and the n-th unit's addresses are, and refuse what is past the end.
"""

from fabguard.domain.identities.checks import iso7064_mod_37_36, luhn_mod_36, verhoeff
from fabguard.domain.identities.macs import IeeeAssignment, MacAddress, MacBlock
from fabguard.domain.identities.serials import CheckAlgorithm, SerialFormat

__all__ = [
    "CheckAlgorithm",
    "IeeeAssignment",
    "MacAddress",
    "MacBlock",
    "SerialFormat",
    "iso7064_mod_37_36",
    "luhn_mod_36",
    "verhoeff",
]
