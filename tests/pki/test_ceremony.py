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
