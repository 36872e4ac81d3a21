"""The ceremony's bundles on their own (``pki.ceremony``): what a request must hold before the root signs
it, and what signing makes of it."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fabguard.domain.errors import InvalidRequest
from fabguard.pki import ceremony, ceremony_checks, profiles
from fabguard.pki.crl import RevokedEntry
from fabguard.pki.keys import new_signing_key
from fabguard.pki.licence import licence_signer_certificate, licence_signer_subject

ORG = "Acme Devices"
NOW = datetime(2030, 6, 1, tzinfo=UTC)


def _request(**changes: object) -> ceremony.CeremonyRequest:
    key = new_signing_key()
    csr = ceremony.ca_csr(key, ORG, f"{ORG} Device Issuing CA")
    request = ceremony.CeremonyRequest(
        organization=ORG,
        instance="abcd1234",
        root_common_name=f"{ORG} FabGuard Root CA",
        crl_url="http://pki.example/crl/root.crl",
        ca_issuers_url="http://pki.example/ca/root.crt",
        next_crl_number=4,
        revoked=(RevokedEntry(0x1234, NOW, "ca_compromise"),),
        requests=(ceremony.SigningRequest("issuing", "issuing-ca", ORG, f"{ORG} Device Issuing CA", csr),),
    )
    return dataclasses.replace(request, **changes)  # type: ignore[arg-type]


def _manifest_edit(files: dict[str, bytes], edit: object) -> dict[str, bytes]:
    manifest = json.loads(files[ceremony.MANIFEST])
    edit(manifest)  # type: ignore[operator]
    return {**files, ceremony.MANIFEST: json.dumps(manifest).encode()}


def test_a_request_reads_back_as_it_was_written() -> None:
    request = _request()
    again = ceremony.read_request(request.to_files())
    assert again.requests[0].csr == request.requests[0].csr and again.revoked == request.revoked
    assert (again.next_crl_number, again.crl_url, again.instance) == (4, request.crl_url, "abcd1234")


@pytest.mark.parametrize(
    ("what", "edit", "code"),
    [
        ("another key", lambda m: m["requests"][0].update(spki_sha256="00" * 32), "ceremony_bundle_invalid"),
        ("another subject", lambda m: m["requests"][0].update(common_name="Evil CA"), "ceremony_bundle_invalid"),
        ("an unknown profile", lambda m: m["requests"][0].update(profile="root-ca"), "ceremony_profile_mismatch"),
        ("a missing file", lambda m: m["requests"][0].update(csr="../../etc/passwd"), "ceremony_bundle_invalid"),
        ("another format", lambda m: m.update(format="something/2"), "ceremony_bundle_invalid"),
        ("an unknown reason", lambda m: m["crl"]["revoked"][0].update(reason="bored"), "ceremony_bundle_invalid"),
    ],
)
def test_a_request_that_is_not_as_its_manifest_says_is_refused(what: str, edit: object, code: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        ceremony.read_request(_manifest_edit(_request().to_files(), edit))
    assert refused.value.code == code, what


def test_a_csr_whose_signature_is_broken_is_refused() -> None:
    files = _request().to_files()
    der = bytearray(x509.load_pem_x509_csr(files["issuing.csr.pem"]).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x55  # inside the signature
    files["issuing.csr.pem"] = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(InvalidRequest, match="not signed by its own key"):
        ceremony.read_request(files)


def test_signing_gives_pathlen_zero_cas_and_a_crl_listing_the_revoked() -> None:
    root = profiles.self_signed_root(new_signing_key(), ORG, f"{ORG} FabGuard Root CA", NOW)
    request = _request()
    bundle = ceremony.sign_request(
        root, request, request_digest="d", crl_number=7, now=NOW, crl_valid_for=timedelta(days=90)
    )
    again = ceremony.read_signed(bundle.to_files())
    cert = again.certificates["issuing"]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    assert cert.public_key() == request.requests[0].csr.public_key() and cert.issuer == root.certificate.subject
    assert again.crl.get_revoked_certificate_by_serial_number(0x1234) is not None
    ceremony_checks.check_root_crl(again.crl, root.certificate, current_crl_number=6, revoked_serials=[0x1234])
    with pytest.raises(InvalidRequest, match="another organisation"):
        ceremony.sign_request(
            root, _request(organization="Other"), request_digest="", crl_number=1, now=NOW, crl_valid_for=timedelta(1)
        )


def _licence_request(product: str = "sensor", **changes: object) -> ceremony.CeremonyRequest:
    key = new_signing_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(licence_signer_subject(ORG, product))
        .sign(key, profiles.hash_for(key))
    )
    signer = ceremony.SigningRequest(
        f"licence-signer.{product}.1", "licence-signer", ORG, f"{product} licences", csr, product_id=product
    )
    return _request(requests=(signer,), **changes)


def test_a_licence_signer_is_signed_with_the_online_roots_profile_and_checked_as_such() -> None:
    root = profiles.self_signed_root(new_signing_key(), ORG, f"{ORG} FabGuard Root CA", NOW)
    request = _licence_request()
    again = ceremony.read_request(request.to_files())
    assert again.requests[0].product_id == "sensor" and again.requests[0].subject == licence_signer_subject(
        ORG, "sensor"
    )
    bundle = ceremony.sign_request(
        root, again, request_digest="d", crl_number=7, now=NOW, crl_valid_for=timedelta(days=90)
    )
    cert = ceremony.read_signed(bundle.to_files()).certificates["licence-signer.sensor.1"]
    online = licence_signer_certificate(root, cert.public_key(), ORG, "sensor", NOW)  # type: ignore[arg-type]
    assert {e.oid: (e.critical, e.value) for e in cert.extensions if e.oid != x509.OID_AUTHORITY_KEY_IDENTIFIER} == {
        e.oid: (e.critical, e.value) for e in online.extensions if e.oid != x509.OID_AUTHORITY_KEY_IDENTIFIER
    }
    assert cert.subject == online.subject and cert.issuer == root.certificate.subject
    want = ceremony_checks.Expected(cert.public_key(), cert.subject, "licence-signer")
    checks = {"known_root": root.certificate, "current_crl_number": 6, "revoked_serials": [], "now": NOW}
    ceremony_checks.check_signed(bundle, {"licence-signer.sensor.1": want}, **checks)  # type: ignore[arg-type]
    as_ca = profiles.intermediate_ca(root, cert.public_key(), ORG, "sensor licences", NOW)  # type: ignore[arg-type]
    forged = dataclasses.replace(bundle, certificates={"licence-signer.sensor.1": as_ca})
    with pytest.raises(InvalidRequest) as refused:
        ceremony_checks.check_signed(forged, {"licence-signer.sensor.1": want}, **checks)  # type: ignore[arg-type]
    assert refused.value.code == "ceremony_profile_mismatch"


@pytest.mark.parametrize(
    ("what", "edit", "code"),
    [
        ("another product", lambda m: m["requests"][0].update(product_id="other"), "ceremony_bundle_invalid"),
        ("no product", lambda m: m["requests"][0].update(product_id=None), "ceremony_bundle_invalid"),
        ("from a Matter PAA", lambda m: m["root"].update(kind="matter-paa", vid=0xFFF1), "ceremony_profile_mismatch"),
    ],
)
def test_a_licence_signer_request_that_is_not_as_its_manifest_says_is_refused(
    what: str, edit: object, code: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        ceremony.read_request(_manifest_edit(_licence_request().to_files(), edit))
    assert refused.value.code == code, what
