"""Revoking a product's licence signer is an act under dual control: it makes every licence the signer issued
invalid on devices that check the root's CRL, so one person asks and a second approves
(``requests.request(inst, product_id, LicenceSignerRevocation(...), by=...)``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from fabguard.service.approvals.registry import Approved, register
from fabguard.service.authority import ceremony_licences, revocation
from fabguard.service.core.instance import Instance
from fabguard.service.royalties import licences

LICENCE_SIGNER_REVOCATION = "licence.revoke_signer"


@dataclass(frozen=True, slots=True)
class LicenceSignerRevocation:
    """The product's (the request's target) licence signer ``generation`` put on the root's CRL for ``reason``."""

    generation: int
    reason: str
    note: str

    def to_json(self) -> dict[str, Any]:
        return {"generation": self.generation, "reason": self.reason, "note": self.note}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LicenceSignerRevocation:
        return cls(int(data["generation"]), str(data["reason"]), str(data["note"]))


# An offline root's CRL is signed at its ceremony: the revocation is marked now, the CRL comes later.
AT_NEXT_CEREMONY = (
    "the root is offline: its CRL lists this signer from the next ceremony "
    "('fabguard ceremony request', 'ceremony crl', 'ceremony import')"
)


def _revocation_is_possible(inst: Instance, s: Session, target: str, p: LicenceSignerRevocation) -> None:
    licences.check_signer_revocation(s, target, p.generation, p.reason)
    if not ceremony_licences.root_is_offline(s):
        inst.cas.issuer("root", s)  # the root signs the CRL: fail now, not once a second person approves


def _revoke_signer(inst: Instance, s: Session, a: Approved[LicenceSignerRevocation]) -> dict[str, object]:
    del inst
    p = a.parameters
    done = licences.revoke_signer_in(
        s, a.target, p.generation, reason_code=p.reason, note=p.note, at=a.now, actor=a.actor, detail=a.detail
    )
    return {**done, "crl": AT_NEXT_CEREMONY} if ceremony_licences.root_is_offline(s) else done


def _resign_root_crl(inst: Instance) -> None:
    with inst.db.read() as s:
        if ceremony_licences.root_is_offline(s):
            return  # no root key here: the next ceremony signs the CRL (request_bundle lists the signer)
    revocation.refresh_crl(inst, "root")


register(
    LICENCE_SIGNER_REVOCATION,
    LicenceSignerRevocation,
    summary="revoke a licence signer",
    check=_revocation_is_possible,
    apply=_revoke_signer,
    after=_resign_root_crl,
)

__all__ = ["LICENCE_SIGNER_REVOCATION", "LicenceSignerRevocation"]
