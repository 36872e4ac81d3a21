"""What a provisioning request is, and what it is answered: a unit request as the edge parsed it (or why it
could not), the issued certificate with its chain, and the device profile that signs it (IEEE 802.1AR
IDevID, or a Matter DAC under a Matter PAI)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes

from fabguard.domain.errors import FabGuardError, Refusal
from fabguard.domain.issuance import dac_refused
from fabguard.domain.values import OrderId, Serial
from fabguard.pki import attestation, matter, profiles
from fabguard.pki.csr import CheckedCsr
from fabguard.service.core.instance import Instance
from fabguard.service.provisioning.identity_draws import UnitIdentity


@dataclass(frozen=True)
class Provisioned:
    serial: str
    order_id: str
    certificate_pem: str
    chain_pem: list[str]
    replayed: bool
    identity: UnitIdentity | None = (
        None  # the unit's serial, MAC addresses and Matter data, where its product has pools
    )

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "serial": self.serial,
            "order_id": self.order_id,
            "certificate": self.certificate_pem,
            "chain": self.chain_pem,
            "replayed": self.replayed,
        }
        if self.identity is not None:
            out["identity"] = self.identity.to_dict()
        return out


@dataclass(frozen=True, slots=True)
class UnitRequest:
    """One unit's provisioning request, parsed at the edge: the order, the serial, the checked CSR, and the
    key attestation if it carried one (a refusal when it could not be read: the product's policy decides)."""

    order_id: OrderId
    serial: Serial
    csr: CheckedCsr
    attestation: attestation.Evidence | Refusal | None = None


@dataclass(frozen=True, slots=True)
class UnparsedUnit:
    """A unit request the edge could not parse: why, and its order id and serial where they were strings."""

    error: FabGuardError
    order_id: str | None
    serial: str | None


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """The product's device profile under one issuing CA, its constant part built once (a writer signs a
    group's units with one): a Matter DAC under a Matter PAI, else an IEEE 802.1AR IDevID."""

    idevid: profiles.IdevidProfile | None
    dac: tuple[matter.DacProfile, matter.VendorId, matter.ProductId] | None
    issuer: profiles.Issuer
    lifetime: timedelta | None

    def certificate(
        self, public_key: CertificateIssuerPublicKeyTypes, serial: Serial, now: datetime, key_id: bytes | None = None
    ) -> x509.Certificate:
        """The unit's certificate. Called once the policies allowed the unit (a DAC's among them); what the
        Matter profile still refuses when signing (a PAI outside its own validity) is refused as they would."""
        if self.idevid is not None:
            return self.idevid.certificate(public_key, serial, now, key_id)
        assert self.dac is not None
        dac, vid, pid = self.dac
        # The product's certificate lifetime bounds a DAC too (within its PAI's validity, as esp-matter-mfg-tool
        # asks of a chain it writes to a factory partition); without one it has no well-defined expiry.
        pai_end = self.issuer.certificate.not_valid_after_utc
        not_after = min(now + self.lifetime, pai_end) if self.lifetime is not None else None
        try:
            return dac.certificate(public_key, serial.value, vid, pid, now, not_after, key_id)
        except matter.AttestationProfileError as exc:
            raise dac_refused(exc.message) from None


def device_profile(
    inst: Instance, issuer: profiles.Issuer, product_id: str, lifetime: timedelta | None, ca_name: str
) -> DeviceProfile:
    """The device profile of ``product_id``'s units signed by ``issuer`` (the CA ``ca_name``)."""
    vid, pid = matter.subject_ids(issuer.certificate.subject)
    if vid is None:
        idevid = profiles.IdevidProfile.of(
            issuer,
            inst.config.organization,
            product_id,
            lifetime,
            crl_url=inst.cas.crl_url(ca_name),
            ca_issuers_url=inst.cas.ca_issuers_url(ca_name),
            ocsp_url=inst.cas.ocsp_url(ca_name),
            crl_issuer=inst.cas.crl_issuer(ca_name),
        )
        return DeviceProfile(idevid, None, issuer, lifetime)
    # The DAC policies (``matter_dac_possible``) read this certificate: a PAI without a product ID is refused.
    assert pid is not None, f"the Matter PAI {ca_name} names no product ID"
    try:
        dac = matter.DacProfile.of(issuer)
    except matter.AttestationProfileError as exc:
        raise dac_refused(exc.message) from None
    return DeviceProfile(None, (dac, vid, pid), issuer, lifetime)


def device_certificate(
    inst: Instance,
    issuer: profiles.Issuer,
    public_key: CertificateIssuerPublicKeyTypes,
    serial: Serial,
    product_id: str,
    now: datetime,
    lifetime: timedelta | None,
    ca_name: str,
) -> x509.Certificate:
    """One certificate of the product's :class:`DeviceProfile`."""
    return device_profile(inst, issuer, product_id, lifetime, ca_name).certificate(public_key, serial, now)
