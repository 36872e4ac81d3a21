"""A site agent's units name the central server's OCSP, CRL and CA URLs, and once synced the central server
answers for them for their whole life (ADR 0020): ``openssl ocsp`` against the central publication listener
says good, then revoked after a central revocation; the central indirect CRL for the agent CA verifies with
``openssl verify -crl_check -extended_crl``. Both engines; real servers; openssl as the oracle."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import AuthorityInformationAccessOID

from fabguard.api.server import ServerThread, publication_config
from fabguard.service.agent import quota_leases, sync
from fabguard.service.agent.site_agent import sync_package
from fabguard.service.authority import revocation
from fabguard.service.core.instance import Instance
from tests.agent.conftest import Site, agent_fixture
from tests.support import tested_device

Agent = tuple[Instance, ServerThread]


def _openssl(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, check=False, timeout=60)


def _ocsp(http: str, issuer: Path, root: Path, cert: Path) -> subprocess.CompletedProcess[str]:
    return _openssl(
        "ocsp", "-issuer", issuer, "-cert", cert, "-url", f"{http}/ocsp", "-CAfile", root, "-no_nonce", "-resp_text"
    )


def test_the_central_server_answers_for_a_synced_agent_unit_by_ocsp_and_crl(
    any_site: Site, any_agent: Agent, tmp_path: Path
) -> None:
    site, (inst, server) = any_site, any_agent
    central = site.world.inst
    terms = site.lease["lease"]
    assert isinstance(terms, dict)
    agent_ca = str(quota_leases.get_lease(central, str(terms["lease_id"]))["agent_ca"])
    files = {"root": central.cas.cert_path("root"), "agent-ca": tmp_path / "agent-ca.pem"}
    files["agent-ca"].write_text(central.cas.certificate_pem(agent_ca))
    with agent_fixture(site, server) as client:
        for serial in ("SN-OK", "SN-LOST"):
            device = tested_device(client, serial)
            files[serial] = tmp_path / f"{serial}.pem"
            files[serial].write_text(client.provision(site.order_id, serial, device.csr_pem()).certificate_pem)
    # The unit names the central server's URLs for the agent CA, and the central status signer as its CRL's issuer.
    unit = x509.load_pem_x509_certificate(files["SN-OK"].read_bytes())
    point = unit.extensions.get_extension_for_class(x509.CRLDistributionPoints).value[0]
    assert [n.value for n in point.full_name or []] == [central.cas.crl_url(agent_ca)]
    access = unit.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    urls = {a.access_method: a.access_location.value for a in access}
    assert urls[AuthorityInformationAccessOID.OCSP] == central.cas.ocsp_url(agent_ca)
    assert urls[AuthorityInformationAccessOID.CA_ISSUERS] == central.cas.ca_issuers_url(agent_ca)
    assert point.crl_issuer is not None and len(point.crl_issuer) == 1

    with ServerThread(central, config=publication_config) as http:
        sync.sync_lease(central, sync_package(inst, site.home), actor="test")
        for serial in ("SN-OK", "SN-LOST"):
            said = _ocsp(http.url, files["agent-ca"], files["root"], files[serial])
            assert said.returncode == 0 and f"{files[serial]}: good" in said.stdout, said.stdout + said.stderr
            assert "Response verify OK" in said.stderr, said.stderr
        revocation.revoke_unit(central, "SN-LOST", reason_code="key_compromise", note="lost", actor="test")
        said = _ocsp(http.url, files["agent-ca"], files["root"], files["SN-LOST"])
        assert f"{files['SN-LOST']}: revoked" in said.stdout and "Reason: keyCompromise" in said.stdout, said.stdout
        assert "Response verify OK" in said.stderr, said.stderr
        assert f"{files['SN-OK']}: good" in _ocsp(http.url, files["agent-ca"], files["root"], files["SN-OK"]).stdout
        # The CRL the unit names, as the central server publishes it, and its signer as the server publishes it.
        crl = x509.load_der_x509_crl(httpx.get(f"{http.url}/crl/{agent_ca}.crl", timeout=30).content)
        signer = httpx.get(f"{http.url}/ca/{agent_ca}-status.crt", timeout=30)
        assert signer.status_code == 200, signer.text
    (tmp_path / "crl.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    chain = tmp_path / "untrusted.pem"
    signer_pem = x509.load_der_x509_certificate(signer.content).public_bytes(serialization.Encoding.PEM)
    chain.write_bytes(files["agent-ca"].read_bytes() + signer_pem)
    verify = ["verify", "-crl_check", "-extended_crl", "-CAfile", files["root"], "-untrusted", chain]
    good = _openssl(*verify, "-CRLfile", tmp_path / "crl.pem", files["SN-OK"])
    assert good.returncode == 0 and ": OK" in good.stdout, good.stdout + good.stderr
    revoked = _openssl(*verify, "-CRLfile", tmp_path / "crl.pem", files["SN-LOST"])
    assert revoked.returncode != 0 and "certificate revoked" in revoked.stdout + revoked.stderr, revoked.stdout
