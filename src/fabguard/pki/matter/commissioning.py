"""A Matter unit's commissioning data, made once per unit: what goes on its label and in its factory data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from fabguard.pki.matter.identity import ProductId, VendorId
from fabguard.pki.matter.onboarding import (
    CommissioningFlow,
    DiscoveryCapability,
    Discriminator,
    OnboardingPayload,
    SetupPasscode,
)
from fabguard.pki.matter.spake2p import DEFAULT_ITERATIONS, Spake2pParameters, spake2p_verifier


@dataclass(frozen=True, slots=True)
class UnitCommissioning:
    """The onboarding payload (the passcode in it goes on the label only) and the SPAKE2+ verifier the
    device keeps: the passcode itself is never written to the device."""

    payload: OnboardingPayload
    parameters: Spake2pParameters
    verifier: bytes

    @classmethod
    def of(cls, payload: OnboardingPayload, parameters: Spake2pParameters) -> Self:
        return cls(payload, parameters, spake2p_verifier(payload.passcode, parameters))

    @classmethod
    def generate(
        cls,
        vendor_id: VendorId,
        product_id: ProductId,
        *,
        flow: CommissioningFlow = CommissioningFlow.STANDARD,
        discovery: DiscoveryCapability = DiscoveryCapability.BLE,
        iterations: int = DEFAULT_ITERATIONS,
    ) -> Self:
        """A unit's own random passcode, discriminator and salt, and what follows from them."""
        payload = OnboardingPayload(
            vendor_id, product_id, Discriminator.random(), SetupPasscode.random(), flow=flow, discovery=discovery
        )
        return cls.of(payload, Spake2pParameters.random(iterations))

    @property
    def qr_code(self) -> str:
        return self.payload.qr_code()

    @property
    def manual_code(self) -> str:
        return self.payload.manual_code()
