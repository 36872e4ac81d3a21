"""Hand-off to device clouds: AWS IoT Core CA registration, Azure DPS enrolment groups, signed device manifests."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from fabguard.api.deps import Engineer, Inst
from fabguard.api.media import JSON, answers
from fabguard.api.responses.handoff import HandoffBundle, SignedManifest
from fabguard.pki.handoff import RegistrationCode, VerificationCode
from fabguard.service.handoff import clouds
from fabguard.service.ledger import reports

router = APIRouter(tags=["handoff"])


class AwsHandoffIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ca: str = Field(max_length=63, description="The issuing CA the devices chain to")
    registration_code: str = Field(max_length=200, description="From 'aws iot get-registration-code' (64 hex digits)")
    role_arn: str | None = Field(
        default=None, max_length=2048, description="IAM role for JITP; without it no registration-config.json"
    )
    order_id: str | None = Field(default=None, max_length=63, description="Only this order's devices in the manifest")


class AzureHandoffIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ca: str = Field(max_length=63, description="The issuing CA the devices chain to")
    verification_code: str = Field(max_length=200, description="The code DPS generated for the uploaded CA certificate")
    enrollment_group_id: str | None = Field(default=None, max_length=200, description="Default: the CA's name")
    certificate_name: str | None = Field(default=None, max_length=200, description="The CA certificate's name in DPS")


@router.post("/api/v1/handoff/aws", status_code=201, response_model=HandoffBundle)
def handoff_aws(inst: Inst, body: AwsHandoffIn, p: Engineer) -> dict[str, Any]:
    """Files for ``aws iot register-ca-certificate`` (CA, verification certificate signed by the CA key, JITP
    registration config) and a bulk-registration manifest of the CA's devices; recorded as ``handoff.aws``."""
    code = clouds.checked(inst, "aws", body.ca, lambda: RegistrationCode(body.registration_code), actor=p.actor)
    return clouds.aws_bundle(
        inst, body.ca, code, role_arn=body.role_arn, order_id=body.order_id, actor=p.actor
    ).to_dict()


@router.post("/api/v1/handoff/azure", status_code=201, response_model=HandoffBundle)
def handoff_azure(inst: Inst, body: AzureHandoffIn, p: Engineer) -> dict[str, Any]:
    """Files for Azure IoT Hub DPS: the proof-of-possession certificate for the verification code and an X.509
    enrolment group referring to the verified CA certificate; recorded as ``handoff.azure``."""
    code = clouds.checked(inst, "azure", body.ca, lambda: VerificationCode(body.verification_code), actor=p.actor)
    return clouds.azure_bundle(
        inst,
        body.ca,
        code,
        enrollment_group_id=body.enrollment_group_id,
        certificate_name=body.certificate_name,
        actor=p.actor,
    ).to_dict()


@router.post(
    "/api/v1/handoff/manifest/{order_id}",
    status_code=201,
    **answers("The signed manifest", JSON, "text/csv", status=201),
    response_model=SignedManifest,
)
def handoff_manifest(inst: Inst, order_id: str, p: Engineer, format: Literal["json", "csv"] = "json") -> Any:
    """Hand off every device of an order (serial, certificate, public key, status...), signed at a checkpoint
    of the whole ledger taken now and recorded as a ``handoff.manifest`` event; json or csv.

    JSON embeds its signature; CSV carries it in ``X-FabGuard-Signature`` (Ed25519 by the ledger key, base64)."""
    m = clouds.order_manifest(inst, order_id, actor=p.actor)
    if format == "json":
        return m.to_dict()
    data = clouds.manifest_csv(m).encode()
    signature = {"X-FabGuard-Signature": reports.sign_bytes(inst, data)}
    return Response(data, status_code=201, media_type="text/csv", headers=signature)
