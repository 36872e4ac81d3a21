"""The CA registry: issuers with their keys, chains up to the parent, CRL addresses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fabguard.domain.errors import ConfigurationError
from fabguard.domain.values import CaName
from fabguard.pki import profiles
from fabguard.service.approvals import requests
from fabguard.service.authority import authorities
from fabguard.service.authority.ca_acts import CaImport
from fabguard.service.core.instance import Instance
from tests.support import REQUESTER, second_person_approves


def test_an_issuing_chain_is_the_ca_then_the_root_and_the_root_chain_is_the_root(instance: Instance) -> None:
    issuing, root = instance.cas.certificate("issuing"), instance.cas.certificate("root")
    chain = [x509.load_pem_x509_certificate(p.encode()) for p in instance.cas.chain_pem("issuing")]
    assert chain == [issuing, root]
    assert [x509.load_pem_x509_certificate(p.encode()) for p in instance.cas.chain_pem("root")] == [root]


def test_a_pending_ca_has_no_chain_until_its_certificate_is_imported_then_the_cached_chain_is_its_own(
    instance: Instance,
) -> None:
    assert instance.cas.chain_pem("issuing") == instance.cas.chain_pem("issuing")  # cached, then served again
    csr_pem = authorities.issuing_csr(instance, CaName("offline"), site_id=None, product_id=None, actor="t")
    with pytest.raises(ConfigurationError, match="has no certificate"):
        instance.cas.chain_pem("offline")
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    signed = profiles.intermediate_ca(
        instance.cas.root_issuer(),
        csr.public_key(),
        "Acme",
        "Offline CA",
        datetime.now(UTC),  # type: ignore[arg-type]
    )
    importing = requests.request(
        instance, "offline", CaImport.from_pem(signed.public_bytes(serialization.Encoding.PEM)), by=REQUESTER
    )
    second_person_approves(instance, importing)
    chain = [x509.load_pem_x509_certificate(p.encode()) for p in instance.cas.chain_pem("offline")]
    assert chain == [signed, instance.cas.certificate("root")]
    chain_copy = instance.cas.chain_pem("offline")
    chain_copy.clear()  # a caller's list is its own: the cached chain is unchanged
    assert len(instance.cas.chain_pem("offline")) == 2


def test_an_issuer_is_built_once_with_the_key_its_registry_entry_names(instance: Instance) -> None:
    issuer = instance.cas.issuer("issuing")
    assert instance.cas.issuer("issuing") is issuer
    assert issuer.key is instance.keys.load("file:issuing")
    assert instance.cas.root_issuer().certificate == instance.cas.certificate("root")


def test_an_unknown_ca_is_a_configuration_error(instance: Instance) -> None:
    with pytest.raises(ConfigurationError, match="has no certificate"):
        instance.cas.issuer("nowhere")


def test_crl_urls_hang_under_the_configured_base(instance: Instance) -> None:
    assert instance.cas.crl_url("root") == f"{instance.config.crl_base_url}/root.crl"
