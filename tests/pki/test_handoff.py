"""The cloud hand-off formats, checked against what AWS IoT Core and Azure DPS document, and the
verification certificate's profile (it proves possession and serves for nothing else)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fabguard.domain.errors import InvalidRequest
from fabguard.pki import handoff, profiles

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
AWS_CODE = "0f" * 32
LINT = Path(sys.executable).parent / "lint_pkix_cert"


@pytest.fixture(scope="module")
def issuing() -> tuple[profiles.Issuer, profiles.Issuer]:
    root = profiles.self_signed_root(ec.generate_private_key(ec.SECP256R1()), "Acme", "Acme Root", NOW)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = profiles.intermediate_ca(root, key.public_key(), "Acme", "Acme Issuing", NOW)
    return root, profiles.Issuer(cert, key)


def test_verification_certificate_names_the_code_and_is_signed_by_the_ca(
    issuing: tuple[profiles.Issuer, profiles.Issuer],
) -> None:
    _, ca = issuing
    cert = handoff.verification_certificate(ca, AWS_CODE, NOW)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == AWS_CODE
    assert cert.issuer == ca.certificate.subject
    cert.verify_directly_issued_by(ca.certificate)


def test_verification_certificate_is_no_ca_no_device_and_short_lived(
    issuing: tuple[profiles.Issuer, profiles.Issuer],
) -> None:
    cert = handoff.verification_certificate(issuing[1], AWS_CODE, NOW)
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca and bc.value.path_length is None
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value == handoff.PROOF_OF_POSSESSION_USAGE
    assert not ku.value.digital_signature and not ku.value.key_cert_sign and not ku.value.crl_sign
    with pytest.raises(x509.ExtensionNotFound):  # so no clientAuth either
        cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert not cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)  # every device certificate has one
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= handoff.VERIFICATION_LIFETIME
    assert cert.not_valid_before_utc <= NOW < cert.not_valid_after_utc


def test_verification_certificate_never_outlives_its_ca(issuing: tuple[profiles.Issuer, profiles.Issuer]) -> None:
    _, ca = issuing
    late = ca.certificate.not_valid_after_utc - timedelta(hours=2)
    assert (
        handoff.verification_certificate(ca, AWS_CODE, late).not_valid_after_utc <= ca.certificate.not_valid_after_utc
    )


def test_pkilint_finds_no_error_in_the_verification_certificate(
    issuing: tuple[profiles.Issuer, profiles.Issuer], tmp_path: Path
) -> None:
    if not LINT.exists():
        pytest.skip("pkilint is not installed in this environment")
    path = tmp_path / "verification.pem"
    path.write_text(handoff.pem(handoff.verification_certificate(issuing[1], AWS_CODE, NOW)))
    result = subprocess.run([LINT, "lint", "-s", "ERROR", path], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "(ERROR)" not in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("code", [AWS_CODE, AWS_CODE.upper(), "0x" + "ab" * 31])
def test_aws_registration_codes_as_aws_documents_them_are_accepted(code: str) -> None:
    assert handoff.RegistrationCode(code).value == code


@pytest.mark.parametrize("code", ["", "0f" * 31, "0f" * 33, "g" * 64, "0f" * 31 + " \n", "CN=x," + "a" * 59, 42])
def test_odd_registration_codes_are_refused(code: object) -> None:
    with pytest.raises(InvalidRequest) as exc:
        handoff.RegistrationCode(code)  # type: ignore[arg-type]
    assert exc.value.code == "registration_code_invalid" and exc.value.status == 422


@pytest.mark.parametrize("code", ["", "A" * 65, "1B1F 84DE", "abc,O=evil", "ü"])
def test_odd_verification_codes_are_refused(code: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        handoff.VerificationCode(code)
    assert exc.value.code == "verification_code_invalid"


def test_a_dps_style_verification_code_is_accepted() -> None:
    assert handoff.VerificationCode("1B1F84DE79B9BD5F16D71E92709917C2A1CA19D5A156CB9F").value.startswith("1B1F")


@pytest.mark.parametrize("arn", ["arn:aws:iam::12345678901:role/x", "arn:aws:iam::123456789012:user/x", "role"])
def test_a_role_arn_that_is_not_an_iam_role_is_refused(arn: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        handoff.role_arn(arn)
    assert exc.value.code == "role_arn_invalid"


def test_jitp_registration_config_has_the_template_as_a_json_string_and_the_role() -> None:
    template = handoff.jitp_template(matter=False)
    config = handoff.registration_config(template, "arn:aws:iam::123456789012:role/JITPRole")
    assert set(config) == {"templateBody", "roleArn"} and all(isinstance(v, str) for v in config.values())
    assert len(config["templateBody"]) <= 10240  # RegistrationConfig.TemplateBody maximum
    body = json.loads(config["templateBody"])
    assert body == template
    params, resources = body["Parameters"], body["Resources"]
    # JITP may only use the parameters AWS extracts from the certificate, each a String
    allowed = {f"AWS::IoT::Certificate::{n}" for n in ("CommonName", "SerialNumber", "Id", "Organization", "Country")}
    assert set(params) <= allowed and all(p == {"Type": "String"} for p in params.values())
    assert {r["Type"] for r in resources.values()} == {"AWS::IoT::Thing", "AWS::IoT::Certificate", "AWS::IoT::Policy"}
    assert resources["thing"]["Properties"]["ThingName"] == {"Ref": "AWS::IoT::Certificate::SerialNumber"}
    cert = resources["certificate"]["Properties"]
    assert cert == {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}
    policy = json.loads(resources["policy"]["Properties"]["PolicyDocument"])  # a JSON string, again
    assert policy["Version"] == "2012-10-17" and all(s["Effect"] == "Allow" for s in policy["Statement"])
    _every_ref_is_declared(body)


def test_a_matter_jitp_template_names_the_thing_by_the_dac_common_name() -> None:
    body = handoff.jitp_template(matter=True)
    assert body["Resources"]["thing"]["Properties"]["ThingName"] == {"Ref": "AWS::IoT::Certificate::CommonName"}
    assert "AWS::IoT::Certificate::SerialNumber" not in body["Parameters"]  # a DAC has no serialNumber
    _every_ref_is_declared(body)


def test_bulk_template_declares_what_each_manifest_line_carries() -> None:
    body = handoff.bulk_template()
    assert set(body["Parameters"]) == {"ThingName", "SerialNumber", "CertificatePem", "CACertificatePem"}
    assert body["Resources"]["certificate"]["Properties"]["CertificatePem"] == {"Ref": "CertificatePem"}
    _every_ref_is_declared(body)


def _every_ref_is_declared(body: dict[str, object]) -> None:
    refs: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if set(node) == {"Ref"}:
                refs.append(node["Ref"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(body["Resources"])
    assert refs and set(refs) <= set(body["Parameters"])  # type: ignore[arg-type]


def test_dps_enrollment_group_has_the_required_fields_of_the_2021_10_01_schema() -> None:
    group = handoff.enrollment_group("issuing-cm-a", "issuing-cm-a", {"ca": "issuing-cm-a"})
    # EnrollmentGroup requires enrollmentGroupId and attestation; AttestationMechanism requires type
    assert isinstance(group["enrollmentGroupId"], str) and group["attestation"]["type"] == "x509"
    assert group["attestation"]["x509"] == {"caReferences": {"primary": "issuing-cm-a"}}
    assert group["capabilities"] == {"iotEdge": False}  # DeviceCapabilities requires iotEdge (boolean)
    assert set(group["reprovisionPolicy"]) == {"updateHubAssignment", "migrateDeviceData"}  # both required
    assert all(isinstance(v, bool) for v in group["reprovisionPolicy"].values())
    assert group["provisioningStatus"] in ("enabled", "disabled")
    assert group["allocationPolicy"] in ("hashed", "geoLatency", "static", "custom")
    assert isinstance(group["initialTwin"]["tags"], dict) and "desired" in group["initialTwin"]["properties"]
    assert json.loads(handoff.dumps(group)) == group


@pytest.mark.parametrize("name", ["", "-x", "x-", "a b", "a/b", "x" * 129])
def test_dps_names_are_checked(name: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        handoff.dps_name(name, "enrolment group id")
    assert exc.value.code == "dps_name_invalid"
