"""The URLs an instance publishes: set at init, changed later, named in certificates (CRL Distribution
Points, Authority Information Access), and compared with where a server listens."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID

from fabguard.domain.errors import InvalidRequest
from fabguard.domain.values import Serial
from fabguard.service.core.config import CONFIG_NAME, load_config, set_published_urls
from fabguard.service.core.instance import Instance
from fabguard.service.core.published_urls import unserved
from fabguard.service.core.seeding import init_instance
from fabguard.service.provisioning import unit_requests

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _device_cert(inst: Instance) -> x509.Certificate:
    issuer = inst.cas.issuer("issuing")
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return unit_requests.device_certificate(inst, issuer, key, Serial("SN-1"), "sensor", NOW, None, "issuing")


def _cdp(cert: x509.Certificate) -> list[str]:
    points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    return [str(name.value) for p in points for name in p.full_name or []]


def _ca_issuers(cert: x509.Certificate) -> list[str]:
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    return [str(d.access_location.value) for d in aia if d.access_method == AuthorityInformationAccessOID.CA_ISSUERS]


def _open(home: Path) -> Instance:
    return Instance.open(home)


def test_by_default_certificates_name_plain_http_on_port_8080_and_the_api_is_https_on_8443(tmp_path: Path) -> None:
    config = init_instance(tmp_path / "h", organization="Acme", hostnames=("fab.example",))
    assert (config.public_url, config.pki_url) == ("https://fab.example:8443", "http://fab.example:8080")
    inst = _open(tmp_path / "h")
    try:
        cert = _device_cert(inst)
        assert _cdp(cert) == ["http://fab.example:8080/crl/issuing.crl"]
        assert _ca_issuers(cert) == ["http://fab.example:8080/ca/issuing.crt"]
        issuing = inst.cas.certificate("issuing")  # the CA certificates name the root's CRL and certificate
        assert _cdp(issuing) == ["http://fab.example:8080/crl/root.crl"]
        assert _ca_issuers(issuing) == ["http://fab.example:8080/ca/root.crt"]
    finally:
        inst.close()


def test_init_takes_the_public_and_pki_urls_and_the_fixture_certificate_names_the_station_ca(tmp_path: Path) -> None:
    init_instance(
        tmp_path / "h",
        organization="Acme",
        public_url="https://api.fab.example/",
        pki_url="http://pki.fab.example",
    )
    inst = _open(tmp_path / "h")
    try:
        assert inst.config.public_url == "https://api.fab.example"
        assert _cdp(_device_cert(inst)) == ["http://pki.fab.example/crl/issuing.crl"]
        assert _ca_issuers(_device_cert(inst)) == ["http://pki.fab.example/ca/issuing.crt"]
        assert inst.cas.ca_issuers_url("station") == "http://pki.fab.example/ca/station.crt"
    finally:
        inst.close()


def test_the_old_crl_url_option_still_names_the_crls_and_puts_the_ca_certificates_beside_them(tmp_path: Path) -> None:
    init_instance(tmp_path / "h", organization="Acme", crl_base_url="http://crl.fab.example:8080/crl")
    inst = _open(tmp_path / "h")
    try:
        assert _cdp(_device_cert(inst)) == ["http://crl.fab.example:8080/crl/issuing.crl"]
        assert _ca_issuers(_device_cert(inst)) == ["http://crl.fab.example:8080/ca/issuing.crt"]
    finally:
        inst.close()


def test_an_instance_json_from_before_keeps_naming_its_crls_where_it_did(tmp_path: Path) -> None:
    home = tmp_path / "h"
    init_instance(home, organization="Acme", hostnames=("fab.example",))
    old = json.loads((home / CONFIG_NAME).read_text())
    del old["public_url"], old["pki_url"]
    old["crl_base_url"] = "https://fab.example:8443/crl"
    (home / CONFIG_NAME).write_text(json.dumps(old))
    config = load_config(home)
    assert (config.crl_base_url, config.pki_url) == ("https://fab.example:8443/crl", "https://fab.example:8443")
    inst = _open(home)
    try:
        assert _cdp(_device_cert(inst)) == ["https://fab.example:8443/crl/issuing.crl"]
    finally:
        inst.close()


def test_a_changed_pki_url_is_named_by_certificates_signed_afterwards_and_earlier_ones_keep_theirs(
    tmp_path: Path,
) -> None:
    home = tmp_path / "h"
    init_instance(home, organization="Acme", pki_url="http://old.example:8080")
    inst = _open(home)
    try:
        before = _device_cert(inst)
    finally:
        inst.close()
    config = set_published_urls(home, pki_url="http://new.example:9080", public_url="https://new.example:9443")
    assert (config.crl_base_url, config.public_url) == ("http://new.example:9080/crl", "https://new.example:9443")
    inst = _open(home)
    try:
        after = _device_cert(inst)
    finally:
        inst.close()
    assert _cdp(before) == ["http://old.example:8080/crl/issuing.crl"]
    assert _cdp(after) == ["http://new.example:9080/crl/issuing.crl"]
    assert _ca_issuers(after) == ["http://new.example:9080/ca/issuing.crt"]


@pytest.mark.parametrize(
    ("setting", "url"),
    [
        ("public_url", "http://fab.example:8443"),  # the API is HTTPS only
        ("pki_url", "ftp://fab.example"),
        ("pki_url", "http://"),
        ("pki_url", "http://fab.example:99999"),
        ("pki_url", "http://fab.example/crl?x=1"),
        ("crl_url", "http://user:pw@fab.example/crl"),
        ("pki_url", "fab.example:8080"),
    ],
)
def test_a_url_that_is_not_a_base_url_is_refused_and_nothing_changes(tmp_path: Path, setting: str, url: str) -> None:
    home = tmp_path / "h"
    init_instance(home, organization="Acme")
    before = (home / CONFIG_NAME).read_text()
    with pytest.raises(InvalidRequest) as refused:
        set_published_urls(home, **{setting: url})
    assert refused.value.code == "invalid_request"
    assert (home / CONFIG_NAME).read_text() == before
    with pytest.raises(InvalidRequest):
        init_instance(
            tmp_path / "other", organization="Acme", **{setting if setting != "crl_url" else "crl_base_url": url}
        )
    assert not (tmp_path / "other").exists()


URLS = dict(
    public_url="https://127.0.0.1:8443",
    crl_base_url="http://127.0.0.1:8080/crl",
    ca_base_url="http://127.0.0.1:8080/ca",
)


def test_a_server_where_the_urls_point_has_nothing_to_say() -> None:
    assert unserved(**URLS, host="127.0.0.1", port=8443, http_port=8080) == []
    assert unserved(**URLS, host="0.0.0.0", port=8443, http_port=8080) == []
    names = dict(
        public_url="https://fab.example", crl_base_url="http://fab.example/crl", ca_base_url="http://fab.example/ca"
    )
    assert unserved(**names, host="0.0.0.0", port=443, http_port=80) == []


def test_a_server_on_another_port_or_without_plain_http_says_so_in_one_line_each() -> None:
    [api] = unserved(**URLS, host="127.0.0.1", port=9443, http_port=8080)
    assert "https://127.0.0.1:8443" in api and "https://127.0.0.1:9443" in api
    [pki] = unserved(**URLS, host="127.0.0.1", port=8443, http_port=None)
    assert "CRLs at http://127.0.0.1:8080/crl/" in pki and "CA certificates" in pki and "--http-port" in pki
    assert len(unserved(**URLS, host="127.0.0.1", port=9443, http_port=9080)) == 2
    names = dict(
        public_url="https://fab.example:8443",
        crl_base_url="http://fab.example:8080/crl",
        ca_base_url="http://fab.example:8080/ca",
    )
    # Listening on loopback only, a server is not where a host name sends other machines.
    assert len(unserved(**names, host="127.0.0.1", port=8443, http_port=8080)) == 2
