"""What a Matter DAC asks of its issuer and its unit (Matter 6.2.2): a PAI whose subject names the product,
a P-256 key. The issuance and re-enrolment policies (``issuance.matter_dac_possible``,
``reenrolment``) use these; that the DAC's VID and PID are the unit's onboarding payload's is
``identities/matter_ids.py``'s rule.
"""

from __future__ import annotations

from dataclasses import dataclass

from fabguard.domain.errors import Refusal
from fabguard.domain.values import KeyType


@dataclass(frozen=True, slots=True)
class MatterPai:
    """An issuing CA that is a Matter PAI, as its certificate's subject says: the product ID the DACs it
    signs carry (None: its subject names none, and a DAC needs one) and their vendor ID (None only where
    the facts leave it out: the service always reads it)."""

    product_id: int | None
    vendor_id: int | None = None


def dac_refused(reason: str) -> Refusal:
    """A Matter DAC the profile does not allow (Matter 6.2.2): the PKI layer's reason, when it signs, for
    what no fact foretold (a PAI outside its own validity)."""
    return Refusal("key_type_not_allowed", f"a Matter DAC cannot be issued: {reason}")


def dac_possible(ca_name: str, pai: MatterPai | None, key_type: KeyType) -> None:
    if pai is None:  # an IDevID issuer
        return
    if pai.product_id is None:
        raise Refusal("key_type_not_allowed", f"the Matter PAI {ca_name} names no product ID for the DAC")
    if key_type is not KeyType.EC_P256:
        raise dac_refused("the DAC public key must be ECDSA on P-256 (6.1)")
