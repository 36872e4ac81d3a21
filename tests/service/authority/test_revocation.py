"""Revocation: units, whole orders and fixtures; CRLs that openssl enforces and pkilint accepts."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from fabguard.domain.values import FixtureId
from fabguard.fixture.client import FabGuardClientError
from fabguard.service.authority import revocation
from fabguard.service.catalog import orders
from fabguard.service.core import events
from fabguard.service.ledger import reports
from tests.support import World, tested_device


@pytest.fixture
def world(ca_world: World) -> World:
    """CRLs are signed with the CA keys in encrypted files and in SoftHSM2 (PKCS#11)."""
    return ca_world


def run(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, check=False)


def fetch_crl(world: World, ca: str, path: Path) -> x509.CertificateRevocationList:
    with httpx.Client(verify=ssl.create_default_context(cafile=str(world.root_ca))) as http:
        r = http.get(f"{world.url}/crl/{ca}.crl")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pkix-crl"
    path.write_bytes(r.content)
    return x509.load_der_x509_crl(r.content)


def crl_check(world: World, cert: Path, crl: Path, issuer: str) -> subprocess.CompletedProcess[str]:
    pem = crl.with_suffix(".pem")
    run("openssl", "crl", "-inform", "DER", "-in", crl, "-out", pem)
    return run(
        "openssl",
        "verify",
        "-crl_check",
        "-CAfile",
        world.root_ca,
        "-untrusted",
        world.inst.cas.cert_path(issuer),
        "-CRLfile",
        pem,
        cert,
    )


@pytest.fixture
def provisioned(world: World, tmp_path: Path) -> tuple[World, str, dict[str, Path]]:
    order = world.order(quota=5)
    fx = world.fixture("fx-1")
    certs = {}
    for serial in ("SN-R1", "SN-R2", "SN-R3"):
        device = tested_device(fx, serial)
        certs[serial] = tmp_path / f"{serial}.pem"
        certs[serial].write_text(fx.provision(order, serial, device.csr_pem()).certificate_pem)
    return world, order, certs


def test_revoked_unit_fails_openssl_crl_check_and_the_others_pass(
    provisioned: tuple[World, str, dict[str, Path]], tmp_path: Path
) -> None:
    world, _, certs = provisioned
    with world.admin() as http:
        r = http.post("/api/v1/units/SN-R1/revoke", json={"reason": "key_compromise", "note": "key leaked at CM"})
    assert r.status_code == 200, r.text
    crl = fetch_crl(world, "issuing", tmp_path / "issuing.crl")

    revoked = crl_check(world, certs["SN-R1"], tmp_path / "issuing.crl", "issuing")
    assert revoked.returncode != 0 and "certificate revoked" in revoked.stdout + revoked.stderr
    assert crl_check(world, certs["SN-R2"], tmp_path / "issuing.crl", "issuing").returncode == 0
    entry = crl.get_revoked_certificate_by_serial_number(
        x509.load_pem_x509_certificate(certs["SN-R1"].read_bytes()).serial_number
    )
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise
    assert crl.is_signature_valid(world.inst.cas.certificate("issuing").public_key())  # type: ignore[arg-type]
    cdp = x509.load_pem_x509_certificate(certs["SN-R1"].read_bytes()).extensions.get_extension_for_class(
        x509.CRLDistributionPoints
    )
    assert cdp.value[0].full_name[0].value.endswith("/crl/issuing.crl")  # type: ignore[index, union-attr]


def test_revoked_serial_is_never_provisioned_again_not_even_as_a_retry(
    provisioned: tuple[World, str, dict[str, Path]],
) -> None:
    world, order, _ = provisioned
    revocation.revoke_unit(world.inst, "SN-R2", reason_code="superseded", note="board replaced", actor="test")
    fx = world.clients[0]
    before = orders.get_order(world.inst, order).used
    from fabguard.fixture.device import SimulatedDevice

    with pytest.raises(FabGuardClientError) as refused:
        fx.provision(order, "SN-R2", SimulatedDevice("SN-R2").csr_pem())
    assert (refused.value.status, refused.value.code) == (409, "unit_revoked")
    assert orders.get_order(world.inst, order).used == before


def test_revoking_an_order_revokes_every_unit_and_shows_in_the_ledger_and_report(
    provisioned: tuple[World, str, dict[str, Path]], tmp_path: Path
) -> None:
    world, order, _ = provisioned
    with world.admin() as http:
        r = http.post(
            f"/api/v1/orders/{order}/revoke-units", json={"reason": "affiliation_changed", "note": "CM breach"}
        )
    assert r.json() == {"order_id": order, "revoked": 3}
    crl = fetch_crl(world, "issuing", tmp_path / "issuing.crl")
    assert len(crl) == 3
    assert len(events.list_events(world.inst, kind="unit.revoked")) == 3
    assert (
        reports.reconciliation_report(world.inst, order_id=order, sign_checkpoint=True).body["figures"]["revoked"] == 3
    )
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    again = revocation.refresh_crl(world.inst, "issuing")
    assert (
        x509.load_der_x509_crl(again).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == number + 1
    )


def test_revoked_fixture_is_on_the_station_crl(world: World, tmp_path: Path) -> None:
    fx = world.fixture("fx-gone")
    from fabguard.service.catalog import fixtures

    fixtures.revoke_fixture(world.inst, FixtureId("fx-gone"), reason="station stolen", actor="test")
    fetch_crl(world, "station", tmp_path / "station.crl")
    result = crl_check(world, fx.credentials.cert, tmp_path / "station.crl", "station")
    assert result.returncode != 0 and "certificate revoked" in result.stdout + result.stderr


@pytest.mark.parametrize("ca", ["root", "issuing", "station"])
def test_every_crl_passes_pkilint(provisioned: tuple[World, str, dict[str, Path]], tmp_path: Path, ca: str) -> None:
    world, _, _ = provisioned
    revocation.revoke_unit(world.inst, "SN-R3", reason_code="cessation_of_operation", note="scrapped", actor="test")
    fetch_crl(world, ca, tmp_path / f"{ca}.crl")
    kind = "ARL" if ca == "root" else "CRL"  # the root's list covers CA certificates: an authority revocation list
    lint = run(
        Path(sys.executable).parent / "lint_crl",
        "lint",
        "-t",
        kind,
        "-p",
        "PKIX",
        "-s",
        "ERROR",
        tmp_path / f"{ca}.crl",
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_bad_revocation_requests_are_refused_and_change_nothing(
    provisioned: tuple[World, str, dict[str, Path]],
) -> None:
    world, order, _ = provisioned
    with world.admin() as http:
        r = http.post("/api/v1/units/SN-R1/revoke", json={"reason": "bored", "note": "x"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_reason"
        r = http.post("/api/v1/units/SN-NONE/revoke", json={"note": "x"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "unit_not_found"
        r = http.get("/crl/nobody.crl")
        assert r.status_code == 404
    assert events.list_events(world.inst, kind="unit.revoked") == []
    revocation.revoke_unit(world.inst, "SN-R1", reason_code="unspecified", note="first", actor="t")
    with pytest.raises(Exception) as twice:
        revocation.revoke_unit(world.inst, "SN-R1", reason_code="unspecified", note="again", actor="t")
    assert getattr(twice.value, "code", None) == "unit_revoked"
    assert orders.get_order(world.inst, order).used == 3
