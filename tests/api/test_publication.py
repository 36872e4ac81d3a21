"""The plain-HTTP publication listener serves CRLs and CA certificates and nothing else; the HTTPS app serves
them too, at the same paths."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from fabguard.api.server import ServerThread, publication_config
from fabguard.service.core.instance import Instance
from tests.support import new_instance


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Instance, str, str]]:
    inst = new_instance(Path(tmp_path_factory.mktemp("pub")) / "home")
    try:
        with ServerThread(inst, config=publication_config) as http, ServerThread(inst) as https:
            yield inst, http.url, https.url
    finally:
        inst.close()


def test_the_listener_is_plain_http(published: tuple[Instance, str, str]) -> None:
    _, http, _ = published
    assert http.startswith("http://")


@pytest.mark.parametrize("ca", ["root", "issuing", "station"])
def test_a_ca_certificate_is_served_der_as_application_pkix_cert(published: tuple[Instance, str, str], ca: str) -> None:
    inst, http, _ = published
    answer = httpx.get(f"{http}/ca/{ca}.crt", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/pkix-cert"
    assert x509.load_der_x509_certificate(answer.content) == inst.cas.certificate(ca)


def test_a_crl_is_served_der_as_application_pkix_crl(published: tuple[Instance, str, str]) -> None:
    inst, http, _ = published
    answer = httpx.get(f"{http}/crl/issuing.crl", timeout=10)
    assert (answer.status_code, answer.headers["content-type"]) == (200, "application/pkix-crl")
    crl = x509.load_der_x509_crl(answer.content)
    assert crl.issuer == inst.cas.certificate("issuing").subject
    assert crl.is_signature_valid(inst.cas.certificate("issuing").public_key())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "path",
    ["/api/v1/health", "/openapi.json", "/docs", "/", "/metrics", "/.well-known/est/cacerts", "/ca/server.crt.pem"],
)
def test_everything_else_is_404_on_plain_http(published: tuple[Instance, str, str], path: str) -> None:
    _, http, _ = published
    answer = httpx.get(f"{http}{path}", timeout=10)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


def test_an_unknown_ca_is_404_ca_not_found(published: tuple[Instance, str, str]) -> None:
    _, http, _ = published
    for path in ("/ca/nobody.crt", "/crl/nobody.crl"):
        answer = httpx.get(f"{http}{path}", timeout=10)
        assert (answer.status_code, answer.json()["error"]["code"]) == (404, "ca_not_found")


def test_the_https_app_serves_the_same_ca_certificates(published: tuple[Instance, str, str]) -> None:
    inst, _, https = published
    verify = ssl.create_default_context(cafile=str(inst.cas.cert_path("root")))
    answer = httpx.get(f"{https}/ca/issuing.crt", verify=verify, timeout=10)
    assert answer.status_code == 200
    assert x509.load_der_x509_certificate(answer.content) == inst.cas.certificate("issuing")
