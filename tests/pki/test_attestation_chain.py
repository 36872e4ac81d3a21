"""Each certificate of an attestation chain must fit its place (``chain.trusted_root``): issuers are CAs
that may sign certificates (keyCertSign when keyUsage is present) within their pathLenConstraint, and the
leaf is no CA. Pure: certificates made for the test, no TPM needed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from fabguard.domain.errors import Refusal
from fabguard.pki.attestation.chain import trusted_root
from tests.tpm_support import SIGNING_USAGE, TestCa

NOW = datetime.now(UTC)


def leaf_key() -> ec.EllipticCurvePublicKey:
    return ec.generate_private_key(ec.SECP256R1()).public_key()


def refused(chain: list[x509.Certificate], roots: list[TestCa]) -> str:
    with pytest.raises(Refusal) as info:
        trusted_root(chain, [r.cert for r in roots], NOW, "the chain")
    assert info.value.code == "attestation_untrusted"
    return info.value.message


def test_an_issuer_without_key_cert_sign_is_refused_in_the_chain_and_as_the_root() -> None:
    root = TestCa.make("Root")
    no_sign = TestCa.make("Signer without keyCertSign", issuer=root, usage=SIGNING_USAGE)
    assert "keyCertSign" in refused([no_sign.issue("leaf", leaf_key()), no_sign.cert], [root])
    signing_root = TestCa.make("Root without keyCertSign", usage=SIGNING_USAGE)
    assert "keyCertSign" in refused([signing_root.issue("leaf", leaf_key())], [signing_root])
    # keyUsage absent: the CA flag alone lets it issue.
    bare = TestCa.make("Root without keyUsage", usage=None)
    assert trusted_root([bare.issue("leaf", leaf_key())], [bare.cert], NOW, "the chain") == bare.cert


def test_a_path_length_constraint_is_respected_by_the_root_and_by_intermediates() -> None:
    root0 = TestCa.make("Root pathLen 0", path_length=0)
    assert trusted_root([root0.issue("leaf", leaf_key())], [root0.cert], NOW, "the chain") == root0.cert
    below0 = TestCa.make("Intermediate", issuer=root0)
    assert "path length" in refused([below0.issue("leaf", leaf_key()), below0.cert], [root0])

    root1 = TestCa.make("Root pathLen 1", path_length=1)
    middle = TestCa.make("Intermediate pathLen 0", issuer=root1, path_length=0)
    assert trusted_root([middle.issue("leaf", leaf_key()), middle.cert], [root1.cert], NOW, "x") == root1.cert
    lower = TestCa.make("Intermediate under pathLen 0", issuer=middle)
    chain = [lower.issue("leaf", leaf_key()), lower.cert, middle.cert]
    assert "path length" in refused(chain, [root1])
    # The same with the root presented as the chain's last certificate.
    assert "path length" in refused([*chain, root1.cert], [root1])


def test_a_leaf_that_is_a_ca_is_refused() -> None:
    root = TestCa.make("Root")
    assert "is a CA" in refused([root.issue("leaf CA", leaf_key(), ca=True)], [root])
