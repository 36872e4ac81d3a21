"""Hand-off to device clouds: the files AWS IoT Core and Azure IoT Hub DPS need, built from values.

Pure: no database, no files. A cloud trusts an issuing CA once the CA's owner proves possession of its
key, by signing a *verification certificate* whose subject CN is a code the cloud chose (AWS: the
account's registration code; DPS: the verification code of the uploaded CA certificate). Such a
certificate is made so that it can serve for nothing else: its private key is generated, used for
nothing and dropped (it is never returned), it lives one day, it is no CA (``CA:FALSE``, no
keyCertSign), and its key usage is nonRepudiation alone, without digitalSignature, so a TLS stack
refuses it as a client (device) or server certificate; it has no extended key usage. It also lacks
the serialNumber attribute every FabGuard device certificate carries.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fabguard.domain.errors import InvalidRequest
from fabguard.pki import profiles
from fabguard.pki.builder import authority_key_id, certificate_builder

VERIFICATION_LIFETIME = timedelta(days=1)
# nonRepudiation only: RFC 5280 wants a bit set, and without digitalSignature no TLS handshake accepts
# the certificate (a key-usage bit, not an EKU: a private EKU needs an OID arc of our own, and the
# registration-free 2.25 UUID arc is longer than the 32-bit arcs pkilint and other parsers take).
PROOF_OF_POSSESSION_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=True,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)

# AWS GetRegistrationCode: 64 characters, pattern (0x)?[a-fA-F0-9]+.
_AWS_CODE = re.compile(r"(0x)?[0-9a-fA-F]+")
# DPS hands out a hexadecimal nonce; accept the letters and digits a CN can hold, at most ub-common-name.
_DPS_CODE = re.compile(r"[0-9A-Za-z]{1,64}")
# AWS RegistrationConfig.roleArn, as documented (length 20-2048).
_ROLE_ARN = re.compile(r"arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+")
# DPS enrolment group ids and certificate names: letters, digits and ". _ - :", none at either end.
_DPS_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._:-]{0,126}[A-Za-z0-9])?")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True, slots=True)
class RegistrationCode:
    """The code ``aws iot get-registration-code`` gave: 64 hexadecimal characters (optionally 0x...)."""

    value: str

    def __post_init__(self) -> None:
        v = self.value
        if not isinstance(v, str) or len(v) != 64 or not _AWS_CODE.fullmatch(v):
            raise InvalidRequest(
                f"the AWS registration code {_shown(v)} must be the 64 hexadecimal characters "
                "'aws iot get-registration-code' printed",
                code="registration_code_invalid",
            )


@dataclass(frozen=True, slots=True)
class VerificationCode:
    """The code DPS generated for an uploaded CA certificate (``az iot dps certificate generate-verification-code``)."""

    value: str

    def __post_init__(self) -> None:
        if not isinstance(self.value, str) or not _DPS_CODE.fullmatch(self.value):
            raise InvalidRequest(
                f"the DPS verification code {_shown(self.value)} must be 1-64 letters and digits, as DPS generated it",
                code="verification_code_invalid",
            )


def role_arn(value: str) -> str:
    """An IAM role ARN as AWS's RegistrationConfig accepts it."""
    if not isinstance(value, str) or not 20 <= len(value) <= 2048 or not _ROLE_ARN.fullmatch(value):
        raise InvalidRequest(
            f"the role ARN {_shown(value)} is not an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>)",
            code="role_arn_invalid",
        )
    return value


def dps_name(value: str, what: str) -> str:
    """An enrolment group id or DPS certificate name: 1-128 letters, digits and ``. _ - :``."""
    if not isinstance(value, str) or not _DPS_NAME.fullmatch(value):
        raise InvalidRequest(
            f"the {what} {_shown(value)} must be 1-128 letters, digits and '. _ - :', "
            "starting and ending with a letter or digit",
            code="dps_name_invalid",
        )
    return value


def verification_certificate(issuer: profiles.Issuer, code: str, now: datetime) -> x509.Certificate:
    """A proof-of-possession certificate: subject CN = ``code``, signed by ``issuer``'s key, usable for nothing else."""
    start = now.astimezone(UTC) - profiles.BACKDATE
    # The key exists only so the certificate has one; nobody ever holds it, so nobody can present the
    # certificate as a client.
    public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return certificate_builder(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, code)]),
        issuer.certificate.subject,
        public_key,
        start,
        min(start + VERIFICATION_LIFETIME, issuer.certificate.not_valid_after_utc),
        constraints=x509.BasicConstraints(ca=False, path_length=None),
        key_usage=PROOF_OF_POSSESSION_USAGE,
        authority_key=authority_key_id(issuer.certificate),
    ).sign(issuer.key, profiles.hash_for(issuer.key))


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _device_policy() -> str:
    """The IoT policy JITP attaches: a device connects as its own thing and talks under its own topics."""
    thing = "${iot:Connection.Thing.ThingName}"
    statements = [
        {
            "Effect": "Allow",
            "Action": ["iot:Connect"],
            "Resource": [f"arn:aws:iot:*:*:client/{thing}"],
        },
        {
            "Effect": "Allow",
            "Action": ["iot:Publish", "iot:Receive"],
            "Resource": [f"arn:aws:iot:*:*:topic/devices/{thing}/*"],
        },
        {
            "Effect": "Allow",
            "Action": ["iot:Subscribe"],
            "Resource": [f"arn:aws:iot:*:*:topicfilter/devices/{thing}/*"],
        },
    ]
    # AWS takes the policy document as a JSON string inside the template.
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, separators=(",", ":"))


def jitp_template(*, matter: bool) -> dict[str, Any]:
    """A just-in-time provisioning template: a thing named after the unit, its certificate ACTIVE, a policy.

    JITP can only use what it reads from the device certificate's subject: a FabGuard IDevID carries
    the serial in serialNumber and the product in CN; a Matter DAC carries the serial in CN.
    """
    name_param = "AWS::IoT::Certificate::CommonName" if matter else "AWS::IoT::Certificate::SerialNumber"
    parameters: dict[str, Any] = {
        "AWS::IoT::Certificate::CommonName": {"Type": "String"},
        "AWS::IoT::Certificate::Id": {"Type": "String"},
    }
    attributes: dict[str, Any] = {"issuer": "fabguard"}
    if not matter:
        parameters["AWS::IoT::Certificate::SerialNumber"] = {"Type": "String"}
        attributes["product"] = {"Ref": "AWS::IoT::Certificate::CommonName"}
    return {
        "Parameters": parameters,
        "Resources": {
            "thing": {
                "Type": "AWS::IoT::Thing",
                "Properties": {"ThingName": {"Ref": name_param}, "AttributePayload": attributes},
            },
            "certificate": {
                "Type": "AWS::IoT::Certificate",
                "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"},
            },
            "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyDocument": _device_policy()}},
        },
    }


def bulk_template() -> dict[str, Any]:
    """A bulk-registration template (``aws iot start-thing-registration-task``) for certificates FabGuard issued."""
    return {
        "Parameters": {
            "ThingName": {"Type": "String"},
            "SerialNumber": {"Type": "String"},
            "CertificatePem": {"Type": "String"},
            "CACertificatePem": {"Type": "String"},
        },
        "Resources": {
            "thing": {
                "Type": "AWS::IoT::Thing",
                "Properties": {
                    "ThingName": {"Ref": "ThingName"},
                    "AttributePayload": {"serialNumber": {"Ref": "SerialNumber"}, "issuer": "fabguard"},
                },
            },
            "certificate": {
                "Type": "AWS::IoT::Certificate",
                "Properties": {
                    "CertificatePem": {"Ref": "CertificatePem"},
                    "CACertificatePem": {"Ref": "CACertificatePem"},
                    "Status": "ACTIVE",
                },
            },
            "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyDocument": _device_policy()}},
        },
    }


def registration_config(template: dict[str, Any], role: str) -> dict[str, str]:
    """``--registration-config`` of ``aws iot register-ca-certificate``: the template body is a JSON string."""
    return {"templateBody": json.dumps(template, indent=2, sort_keys=True), "roleArn": role}


def enrollment_group(group_id: str, certificate_name: str, tags: dict[str, str]) -> dict[str, Any]:
    """A DPS enrolment group (``PUT /enrollmentGroups/{id}``, api-version 2021-10-01) for a verified CA certificate.

    ``caReferences.primary`` names the CA certificate as uploaded to DPS; every device whose chain
    leads to it may register. Hashed allocation over the linked hubs, re-provisioning keeps data.
    """
    return {
        "enrollmentGroupId": group_id,
        "attestation": {"type": "x509", "x509": {"caReferences": {"primary": certificate_name}}},
        "capabilities": {"iotEdge": False},
        "provisioningStatus": "enabled",
        "reprovisionPolicy": {"updateHubAssignment": True, "migrateDeviceData": True},
        "allocationPolicy": "hashed",
        "initialTwin": {"tags": {"fabguard": dict(tags)}, "properties": {"desired": {}}},
    }


def dumps(doc: object) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def aws_readme(with_role: bool, agent_cas: Sequence[str] = ()) -> str:
    """How to use an AWS hand-off's files, step by step (``agent_cas``: the site agents' CAs it carries)."""
    config = "--registration-config file://registration-config.json" if with_role else ""
    lines = [
        "FabGuard hand-off to AWS IoT Core",
        "",
        "1. Register the issuing CA with its proof of possession (verification.pem: CN = your registration code,",
        "   signed by the CA key; its own key was discarded, it is valid one day and serves for nothing else):",
        "   aws iot register-ca-certificate --ca-certificate file://ca.pem --verification-cert file://verification.pem \\",
        f"       --set-as-active --allow-auto-registration {config}".rstrip(),
    ]
    if not with_role:
        lines += [
            "   (Without --role-arn no registration-config.json was written: export again with --role-arn, or attach",
            "   jitp-template.json later with aws iot update-ca-certificate --registration-config.)",
        ]
    lines += [
        "2. Devices then provision on first connection (JITP, jitp-template.json): a thing named after the unit,",
        "   its certificate ACTIVE, a policy restricting it to its own client id and topics.",
        "3. Or register them ahead of time: upload bulk-registration.jsonl to S3 and run",
        "   aws iot start-thing-registration-task --template-body file://bulk-template.json \\",
        "       --input-file-bucket BUCKET --input-file-key bulk-registration.jsonl --role-arn ROLE_ARN",
        "Check offline: openssl verify -CAfile chain.pem verification.pem",
        "",
    ]
    if agent_cas:
        lines += [
            "Site agents: units an offline site agent issued under a quota lease chain to the root through the",
            "agent's own CA, and AWS IoT registers a certificate under the CA that signed it. Register each agent CA",
            "before step 3 (bulk-registration.jsonl names it as those units' CACertificatePem). Its key is at the",
            "site, so no proof of possession can be made here: register it in SNI_ONLY mode (devices send SNI), and",
            "without auto-registration, so that only the units the agent synced home (those in the bulk file) are",
            "registered, never a certificate it signed off its log. Check first that your root signed it:",
        ]
        for name in agent_cas:
            lines += [
                f"   openssl verify -CAfile YOUR_ROOT.pem {name}.pem      (or: openssl verify -CAfile {name}-chain.pem {name}.pem)",
                f"   aws iot register-ca-certificate --ca-certificate file://{name}.pem --certificate-mode SNI_ONLY --set-as-active",
            ]
        lines.append("")
    return "\n".join(lines)


def azure_readme(group: str, cert_name: str, agent_cas: Sequence[str] = ()) -> str:
    """How to use an Azure DPS hand-off's files, step by step (``agent_cas``: the site agents' CAs it carries)."""
    lines = [
        "FabGuard hand-off to Azure IoT Hub Device Provisioning Service",
        "",
        "1. Upload the issuing CA certificate and ask for a verification code:",
        f"   az iot dps certificate create --dps-name DPS -g RG --certificate-name {cert_name} --path ca.pem",
        f"   az iot dps certificate generate-verification-code --dps-name DPS -g RG --certificate-name {cert_name} --etag ETAG",
        "2. verification.pem is the proof of possession for that code (CN = the code, signed by the CA key; its own",
        "   key was discarded, it is valid one day and serves for nothing else):",
        f"   az iot dps certificate verify --dps-name DPS -g RG --certificate-name {cert_name} --path verification.pem --etag ETAG",
        "3. Create the enrolment group (REST body in enrollment-group.json):",
        f"   az iot dps enrollment-group create --dps-name DPS -g RG --enrollment-id {group} --ca-name {cert_name}",
        f"   or PUT https://DPS.azure-devices-provisioning.net/enrollmentGroups/{group}?api-version=2021-10-01",
        "Check offline: openssl verify -CAfile chain.pem verification.pem",
        "",
    ]
    if agent_cas:
        lines += [
            "Site agents: units an offline site agent issued under a quota lease chain to the root through the",
            "agent's own CA, not through the CA above. Give DPS each agent CA and an enrolment group of its own. Its",
            "key is at the site, so no proof of possession can be made here: check that your root signed it, then",
            "upload it marked verified. DPS then admits any certificate that CA signs: disable its group once the",
            "lease has ended and its last sync is in (FabGuard's field checks still tell synced units from others).",
        ]
        for name in agent_cas:
            lines += [
                f"   openssl verify -CAfile YOUR_ROOT.pem {name}.pem      (or: openssl verify -CAfile {name}-chain.pem {name}.pem)",
                f"   az iot dps certificate create --dps-name DPS -g RG --certificate-name {name} --path {name}.pem --verified true",
                f"   az iot dps enrollment-group create --dps-name DPS -g RG --enrollment-id {name} --ca-name {name}",
                f"   (REST body in {name}-enrollment-group.json)",
            ]
        lines.append("")
    return "\n".join(lines)
