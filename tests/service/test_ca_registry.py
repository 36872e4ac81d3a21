"""The CA registry: issuers with their keys, chains up to the parent, CRL addresses."""

from __future__ import annotations

import pytest
from cryptography import x509

from fabguard.domain.errors import ConfigurationError
from fabguard.service.instance import Instance


def test_an_issuing_chain_is_the_ca_then_the_root_and_the_root_chain_is_the_root(instance: Instance) -> None:
    issuing, root = instance.cas.certificate("issuing"), instance.cas.certificate("root")
    chain = [x509.load_pem_x509_certificate(p.encode()) for p in instance.cas.chain_pem("issuing")]
    assert chain == [issuing, root]
    assert [x509.load_pem_x509_certificate(p.encode()) for p in instance.cas.chain_pem("root")] == [root]


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
