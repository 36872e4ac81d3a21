"""An offline root (issue 25, item 1): the instance makes every key but the root's, a ceremony (its own
directory, standing for the air-gapped machine) signs the CSRs and the root's CRL, the instance imports
them. Real keys, real SQLite and PostgreSQL, a real server; OpenSSL verifies the chains and the CRLs."""

from __future__ import annotations

import dataclasses
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fabguard.domain.errors import FabGuardError
from fabguard.domain.values import CaName, ProductId
from fabguard.pki import ceremony, ceremony_root, profiles
from fabguard.pki.pkcs11 import Pkcs11EcPrivateKey
from fabguard.service.approvals import requests
from fabguard.service.authority import authorities, revocation
from fabguard.service.authority import ceremony as instance_side
from fabguard.service.authority.ca_acts import CaRevocation
from fabguard.service.catalog import product_catalog
from fabguard.service.core.instance import Instance
from fabguard.service.core.seeding import init_instance
from fabguard.service.operations import backup as backups
from fabguard.service.royalties import licences
from fabguard.store.backups import pg_tool
from fabguard.store.models import CertificateAuthority
from tests.support import (
    PASSPHRASE,
    REQUESTER,
    TOKEN,
    USER_PIN,
    SoftHsm,
    World,
    second_person_approves,
    softhsm_available,
    tested_device,
)

ORG = "Acme Devices"


@dataclass
class Ceremony:
    """The air-gapped side: a root in its own directory, and what it signed."""

    directory: Path

    def sign(self, request: dict[str, bytes], *, crl_only: bool = False) -> dict[str, bytes]:
        parsed = ceremony.read_request(request)
        with ceremony_root.opened_root(self.directory) as root:
            number = root.next_crl_number(parsed.next_crl_number)
            bundle = ceremony.sign_request(
                root.issuer,
                parsed,
                request_digest=ceremony.manifest_digest(request),
                crl_number=number,
                now=datetime.now(UTC),
                crl_valid_for=timedelta(days=90),
                sign_csrs=not crl_only,
            )
            root.record_crl_number(number)
        return bundle.to_files()


def new_ceremony(directory: Path, common_name: str = f"{ORG} FabGuard Root CA", **kw: Any) -> Ceremony:
    ceremony_root.create_root(directory, organization=ORG, common_name=common_name, now=datetime.now(UTC), **kw)
    return Ceremony(directory)


def offline_instance(home: Path, ceremony_: Ceremony, database_url: str | None = None) -> Instance:
    """``init --offline-root``, the ceremony's signature, ``init --import-ceremony``: an instance that serves."""
    init_instance(home, organization=ORG, database_url=database_url, offline_root=True)
    inst = Instance.open(home)
    request = instance_side.request_bundle(inst)
    instance_side.import_bundle(inst, ceremony_.sign(request), actor="test")
    return inst


@pytest.fixture
def root(tmp_path: Path) -> Ceremony:
    return new_ceremony(tmp_path / "ceremony")


@pytest.fixture
def offline(tmp_path: Path, root: Ceremony, database_url: str | None) -> Iterator[Instance]:
    inst = offline_instance(tmp_path / "home", root, database_url)
    yield inst
    inst.close()


def openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, timeout=60, check=False)


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def test_init_with_an_offline_root_makes_no_root_key_and_asks_for_the_two_cas(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init_instance(home, organization=ORG, offline_root=True)
    inst = Instance.open(home)
    try:
        request = ceremony.read_request(instance_side.request_bundle(inst))
        names = {p.name for p in (home / "keys").iterdir()}
        held = {r.name: inst.keys.load(inst.keys.ref_for(r.name)).public_key() for r in request.requests}
        with pytest.raises(FabGuardError) as refused:
            inst.cas.issuer("issuing")
    finally:
        inst.close()
    assert "root.key.pem" not in names and {"issuing.key.pem", "station.key.pem", "server.key.pem"} <= names
    assert not (home / "ca" / "root.pem").exists()
    assert [(r.name, r.profile) for r in request.requests] == [("issuing", "issuing-ca"), ("station", "station-ca")]
    assert all(held[r.name] == r.csr.public_key() for r in request.requests)
    assert (request.next_crl_number, request.revoked) == (1, ())
    assert "import-ceremony" in str(refused.value)


def test_an_offline_root_instance_provisions_units_whose_chain_openssl_verifies(
    offline: Instance, root: Ceremony, tmp_path: Path
) -> None:
    world = World.start(offline, tmp_path)
    try:
        fx = world.fixture("fx-1")  # enrolled by the station CA the ceremony signed, over the new server cert
        order = world.order(quota=2)
        device = tested_device(fx, "SN-OFF-1")
        pem = fx.provision(order, "SN-OFF-1", device.csr_pem()).certificate_pem
        with world.admin() as admin:
            root_crl = admin.get("/crl/root.crl")
            issuing_crl = admin.get("/crl/issuing.crl")
    finally:
        world.stop()
    assert root_crl.status_code == 200 and issuing_crl.status_code == 200
    ca = offline.home / "ca"
    crls = write(tmp_path / "crls.pem", b"".join(_pem_crl(c.content) for c in (root_crl, issuing_crl)))
    leaf = write(tmp_path / "device.pem", pem)
    result = openssl(
        "verify", "-x509_strict", "-crl_check_all", "-CRLfile", crls,
        "-CAfile", root.directory / "root.pem", "-untrusted", ca / "issuing.pem", leaf,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("station", "server"):
        chain = ["-untrusted", ca / "station.pem"] if name == "server" else []
        result = openssl("verify", "-x509_strict", "-CAfile", root.directory / "root.pem", *chain, ca / f"{name}.pem")
        assert result.returncode == 0, result.stdout + result.stderr
    assert (ca / "root.pem").read_bytes() == (root.directory / "root.pem").read_bytes()


def _pem_crl(der: bytes) -> bytes:
    return x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM)


def _root_key_forms(root: Ceremony) -> dict[str, bytes]:
    """Every form the root's private key could take on disk or in a database: its scalar, PKCS#8 DER and
    PEM (plain), the SEC1 forms, and the encrypted file the ceremony keeps."""
    encrypted = (root.directory / ceremony_root.ROOT_KEY).read_bytes()
    key = serialization.load_pem_private_key(encrypted, password=PASSPHRASE.encode())
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    forms = {"scalar": key.private_numbers().private_value.to_bytes(32, "big"), "encrypted file": encrypted}
    for fname, fmt in (
        ("PKCS8", serialization.PrivateFormat.PKCS8),
        ("SEC1", serialization.PrivateFormat.TraditionalOpenSSL),
    ):
        for ename, enc in (("DER", serialization.Encoding.DER), ("PEM", serialization.Encoding.PEM)):
            forms[f"{fname} {ename}"] = key.private_bytes(enc, fmt, serialization.NoEncryption())
    forms["scalar hex"] = forms["scalar"].hex().encode()
    return forms


def _found(where: Path, needles: dict[str, bytes]) -> list[str]:
    """Where (a file, or every file under a directory) any of ``needles`` occurs."""
    hits = []
    for path in [where] if where.is_file() else sorted(p for p in where.rglob("*") if p.is_file()):
        data = path.read_bytes()
        hits += [f"{what} in {path}" for what, needle in needles.items() if needle in data]
    return hits


def test_no_root_private_key_is_on_the_server_in_its_database_or_its_backup(
    offline: Instance, root: Ceremony, tmp_path: Path
) -> None:
    forms = _root_key_forms(root)
    revocation.refresh_crl(offline, "issuing")  # some use first: the server signs with every key it holds
    backups.backup(offline, tmp_path / "backup")
    dump = tmp_path / "backup" / backups.PG_DUMP_FILE
    if dump.exists():  # pg_dump's custom format is compressed: search the database as plain SQL
        subprocess.run([pg_tool("pg_restore"), f"--file={tmp_path / 'database.sql'}", dump], check=True, timeout=120)
        assert b"certificate_authorities" in (tmp_path / "database.sql").read_bytes()
        assert _found(tmp_path / "database.sql", forms) == []
    assert _found(offline.home, forms) == []  # the SQLite database, its WAL, keys/, ca/
    assert _found(tmp_path / "backup", forms) == []
    # The search sees a key where there is one: the ceremony's own directory, and a planted plain copy.
    assert "encrypted file in" in " ".join(_found(root.directory, forms))
    write(tmp_path / "backup" / "planted", b"x" + forms["PKCS8 DER"] + b"y")
    assert any("PKCS8 DER" in hit for hit in _found(tmp_path / "backup", forms))


def _root_crl(inst: Instance) -> x509.CertificateRevocationList:
    return x509.load_der_x509_crl(revocation.current_crl(inst, "root"))


def _number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def test_a_revoked_issuing_ca_reaches_the_root_crl_at_the_next_ceremony(
    offline: Instance, root: Ceremony, tmp_path: Path
) -> None:
    """Revoking a CA under an offline root marks it at once; the root's CRL lists it once a ceremony signs it."""
    second_person_approves(
        offline, requests.request(offline, "issuing", CaRevocation("key_compromise", "CM breach"), by=REQUESTER)
    )
    before = _root_crl(offline)
    serial = x509.load_pem_x509_certificate((offline.home / "ca" / "issuing.pem").read_bytes()).serial_number
    assert before.get_revoked_certificate_by_serial_number(serial) is None  # not signed here: no root key

    request = ceremony.read_request(instance_side.request_bundle(offline))
    assert [e.serial_number for e in request.revoked] == [serial] and request.next_crl_number == _number(before) + 1
    instance_side.import_bundle(offline, root.sign(instance_side.request_bundle(offline), crl_only=True), actor="t")

    after = _root_crl(offline)
    listed = after.get_revoked_certificate_by_serial_number(serial)
    assert listed is not None and _number(after) == _number(before) + 1
    assert listed.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise
    crl = write(tmp_path / "root.crl.pem", after.public_bytes(serialization.Encoding.PEM))
    result = openssl(
        "verify",
        "-crl_check",
        "-CRLfile",
        crl,
        "-CAfile",
        root.directory / "root.pem",
        offline.home / "ca" / "issuing.pem",
    )
    assert result.returncode != 0 and "certificate revoked" in result.stdout + result.stderr


def test_a_new_issuing_ca_is_signed_at_a_ceremony_and_serves_its_scope(
    offline: Instance, root: Ceremony, tmp_path: Path
) -> None:
    from fabguard.domain.values import ProductId
    from fabguard.service.catalog import product_catalog

    product_catalog.create_product(offline, product_id=ProductId("sensor"), name="Sensor", actor="test")
    request = instance_side.add_issuer(offline, CaName("sensor-ca"), site_id=None, product_id="sensor", actor="t")
    assert authorities.get_ca(offline, "sensor-ca").state == "pending"
    assert [r.name for r in ceremony.read_request(request).requests] == ["sensor-ca"]
    done = instance_side.import_bundle(offline, root.sign(request), actor="t")

    view = authorities.get_ca(offline, "sensor-ca")
    assert done.cas == ("sensor-ca",) and view.state == "active" and view.product_id == "sensor"
    with offline.db.read() as s:
        assert authorities.choose_issuing_ca(s, "sensor", "any-site") == "sensor-ca"
    pem = write(tmp_path / "sensor-ca.pem", offline.cas.certificate_pem("sensor-ca"))
    result = openssl("verify", "-x509_strict", "-CAfile", root.directory / "root.pem", pem)
    assert result.returncode == 0, result.stdout + result.stderr
    constraints = x509.load_pem_x509_certificate(pem.read_bytes()).extensions.get_extension_for_class(
        x509.BasicConstraints
    )
    assert constraints.value.path_length == 0 and constraints.critical


def test_an_instance_with_an_online_root_refuses_ceremony_steps(tmp_path: Path) -> None:
    from tests.support import new_instance

    inst = new_instance(tmp_path / "home")
    try:
        with pytest.raises(FabGuardError) as refused:
            instance_side.request_bundle(inst)
    finally:
        inst.close()
    assert refused.value.code == "root_not_offline"


def test_the_root_of_an_offline_instance_signs_nothing_here(offline: Instance) -> None:
    from fabguard.service.authority.ca_acts import CaCreation

    with pytest.raises(FabGuardError) as refused:
        offline.cas.issuer("root")
    with pytest.raises(FabGuardError) as asked:  # 'ca create-issuing': refused when asked, not once approved
        requests.request(offline, "online-ca", CaCreation(None, None), by=REQUESTER)
    assert refused.value.code == asked.value.code == "ca_key_offline"
    assert "root" not in revocation.ca_names(offline)
    # A licence signer is the root's to certify: not made here (docs/key-rotation.md), nothing written.
    product_catalog.create_product(offline, product_id=ProductId("lic"), name="Licensed", actor="test")
    with pytest.raises(FabGuardError) as signer:
        licences.rotate_signer(offline, ProductId("lic"), actor="test")
    assert signer.value.code == "ca_key_offline"
    assert licences.signers(offline, ProductId("lic")) == []
    assert list(offline.keys.directory.glob("licence-*")) == []


# ----------------------------------------------------------------------------- what import refuses


@pytest.fixture
def waiting(tmp_path: Path) -> Iterator[Instance]:
    """An instance made with --offline-root, waiting for its first ceremony (SQLite)."""
    init_instance(tmp_path / "home", organization=ORG, offline_root=True)
    inst = Instance.open(tmp_path / "home")
    yield inst
    inst.close()


def _refused(inst: Instance, files: dict[str, bytes]) -> str:
    with pytest.raises(FabGuardError) as refused:
        instance_side.import_bundle(inst, files, actor="t")
    with inst.db.read() as s:  # nothing was imported
        assert [r.state for r in s.query(CertificateAuthority).order_by("name")] == ["pending"] * 2
    assert not (inst.home / "ca" / "root.pem").exists()
    return refused.value.code


def _resigned(files: dict[str, bytes], name: str, cert: x509.Certificate) -> dict[str, bytes]:
    return {**files, f"{name}.pem": cert.public_bytes(serialization.Encoding.PEM)}


def test_import_refuses_a_bundle_signed_by_another_root(waiting: Instance, tmp_path: Path) -> None:
    request = instance_side.request_bundle(waiting)
    good = new_ceremony(tmp_path / "good").sign(request)
    other = new_ceremony(tmp_path / "other").sign(request)
    mixed = {**good, "issuing.pem": other["issuing.pem"]}  # one certificate from another root
    assert _refused(waiting, mixed) == "certificate_untrusted"
    assert _refused(waiting, {**good, "root.crl": other["root.crl"]}) == "crl_invalid"


def test_import_refuses_a_certificate_for_another_key_or_of_another_profile(waiting: Instance, root: Ceremony) -> None:
    request = instance_side.request_bundle(waiting)
    files = root.sign(request)
    with ceremony_root.opened_root(root.directory) as opened:
        subject_cn = f"{ORG} Device Issuing CA"
        stranger = profiles.intermediate_ca(
            opened.issuer, ec.generate_private_key(ec.SECP256R1()).public_key(), ORG, subject_cn, datetime.now(UTC)
        )
        key = waiting.keys.load("file:issuing").public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        deeper = _path_len_one(opened.issuer, key, subject_cn)
    assert _refused(waiting, _resigned(files, "issuing", stranger)) == "certificate_key_mismatch"
    assert _refused(waiting, _resigned(files, "issuing", deeper)) == "ceremony_profile_mismatch"
    swapped = {**files, "issuing.pem": files["station.pem"], "station.pem": files["issuing.pem"]}
    assert _refused(waiting, swapped) == "certificate_key_mismatch"
    broken = {k: v for k, v in files.items() if k != "root.crl"}
    assert _refused(waiting, broken) == "ceremony_bundle_invalid"


def _path_len_one(root: profiles.Issuer, key: ec.EllipticCurvePublicKey, cn: str) -> x509.Certificate:
    """A CA certificate for the right key and subject that could certify further CAs: not the profile."""
    from fabguard.pki.builder import authority_key_id, certificate_builder

    now = datetime.now(UTC)
    return certificate_builder(
        ceremony.ca_subject(ORG, cn), root.certificate.subject, key, now, now + timedelta(days=365),
        constraints=x509.BasicConstraints(ca=True, path_length=1), key_usage=profiles.ca_key_usage(),
        authority_key=authority_key_id(root.certificate),
    ).sign(root.key, hashes.SHA256())  # fmt: skip


def test_import_refuses_a_crl_that_is_not_newer_or_leaves_out_a_revoked_ca(offline: Instance, root: Ceremony) -> None:
    renewal = root.sign(instance_side.request_bundle(offline), crl_only=True)
    instance_side.import_bundle(offline, renewal, actor="t")
    with pytest.raises(FabGuardError) as again:
        instance_side.import_bundle(offline, renewal, actor="t")  # replayed: the CRL number is not above
    second_person_approves(
        offline, requests.request(offline, "station", CaRevocation("ca_compromise", "lost"), by=REQUESTER)
    )
    request = ceremony.read_request(instance_side.request_bundle(offline))
    forgetful = dataclasses.replace(request, revoked=())  # a ceremony that leaves the revoked CA out
    with ceremony_root.opened_root(root.directory) as opened:
        bundle = ceremony.sign_request(
            opened.issuer, forgetful, request_digest="", crl_number=request.next_crl_number + 5,
            now=datetime.now(UTC), crl_valid_for=timedelta(days=30), sign_csrs=False,
        )  # fmt: skip
    with pytest.raises(FabGuardError) as short:
        instance_side.import_bundle(offline, bundle.to_files(), actor="t")
    assert again.value.code == short.value.code == "crl_invalid"
    assert _number(_root_crl(offline)) == _number(x509.load_der_x509_crl(renewal["root.crl"]))


@pytest.mark.skipif(not softhsm_available(), reason="SoftHSM2 is not installed (apt-get install softhsm2)")
def test_a_root_in_an_hsm_signs_the_ceremony(tmp_path: Path, softhsm: SoftHsm, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ceremony's root key made inside a PKCS#11 token (SoftHSM2), never extractable; the instance's
    own CA keys in another token of its own would work the same (its key store)."""
    monkeypatch.setenv("FABGUARD_PKCS11_PIN", USER_PIN)
    label = f"root-{secrets.token_hex(4)}"
    hsm_root = new_ceremony(
        tmp_path / "ceremony", key_backend="pkcs11", pkcs11_module=softhsm.module, pkcs11_token=TOKEN, key_label=label
    )
    assert not (hsm_root.directory / ceremony_root.ROOT_KEY).exists()
    inst = offline_instance(tmp_path / "home", hsm_root)
    try:
        chain = inst.cas.chain_pem("issuing")
    finally:
        inst.close()
    root_pem = (hsm_root.directory / "root.pem").read_bytes()
    assert chain[1].encode() == root_pem
    result = openssl(
        "verify", "-x509_strict", "-CAfile", hsm_root.directory / "root.pem", tmp_path / "home" / "ca" / "issuing.pem"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with ceremony_root.opened_root(hsm_root.directory) as opened:
        assert isinstance(opened.issuer.key, Pkcs11EcPrivateKey) and opened.state.last_crl_number == 1


def test_doctor_skips_the_offline_root_key_and_says_when_its_crl_is_due(offline: Instance) -> None:
    from fabguard.service.operations import doctor

    findings = {(f.check, f.status): f.message for f in doctor.examine(offline, _passphrase_env())}
    assert "the root's is offline" in findings[("keys", "ok")]
    assert ("keys", "failed") not in findings and "valid until" in findings[("crl", "ok")]
    offline.clock = lambda: datetime.now(UTC) + timedelta(days=75)  # the ceremony signed it for 90 days
    late = {(f.check, f.status): f.message for f in doctor.examine(offline, _passphrase_env())}
    assert "expires in 14 days" in late[("crl", "warning")]


def _passphrase_env() -> dict[str, str]:
    return {"FABGUARD_KEY_PASSPHRASE": PASSPHRASE}


# ----------------------------------------------------------------------------- the Matter PAA


@pytest.fixture
def bulb(offline: Instance) -> Instance:
    from fabguard.domain.values import ProductId
    from fabguard.service.catalog import product_catalog

    product_catalog.create_product(offline, product_id=ProductId("bulb"), name="Bulb", actor="test")
    return offline


def test_an_offline_root_instance_makes_no_matter_paa_of_its_own(bulb: Instance) -> None:
    """On an instance whose root is offline, a PAI asked for the online way would make its PAA (a root)
    here: refused when asked, naming the ceremony step."""
    from fabguard.service.authority.ca_acts import MatterPaiCreation

    with pytest.raises(FabGuardError) as refused:
        requests.request(bulb, "bulb-pai", MatterPaiCreation("bulb", 0xFFF1, 0x8000), by=REQUESTER)
    assert refused.value.code == "ca_key_offline" and "add-matter-pai" in str(refused.value)
    assert "matter-paa-fff1" not in {c.name for c in authorities.list_cas(bulb)}


def test_a_matter_pai_is_signed_at_its_paa_ceremony_and_issues_dacs_that_chain(bulb: Instance, tmp_path: Path) -> None:
    from fabguard.pki import matter

    paa = new_ceremony(tmp_path / "paa", f"{ORG} Matter PAA FFF1", matter_vid=0xFFF1)
    request = instance_side.add_matter_pai(
        bulb, CaName("bulb-pai"), product_id="bulb", vid=0xFFF1, pid=0x8000, actor="t"
    )
    parsed = ceremony.read_request(request)
    assert [(r.name, r.profile, r.vid, r.pid) for r in parsed.requests] == [("bulb-pai", "matter-pai", 0xFFF1, 0x8000)]
    assert parsed.root_kind == "matter-paa" and parsed.root_vid == 0xFFF1
    assert ceremony.read_request(instance_side.request_bundle(bulb)).requests == ()  # not the root's to sign
    with pytest.raises(FabGuardError) as wrong_root:  # FabGuard's root is not the PAA the request names
        Ceremony(tmp_path / "ceremony").sign(request)
    assert wrong_root.value.code == "ceremony_bundle_invalid"

    root_pem = (bulb.home / "ca" / "root.pem").read_bytes()
    done = instance_side.import_bundle(bulb, paa.sign(request), actor="t")
    assert done.cas == ("bulb-pai",) and (bulb.home / "ca" / "root.pem").read_bytes() == root_pem
    assert {c.name: (c.role, c.key_ref) for c in authorities.list_cas(bulb)}["matter-paa-fff1"] == (
        "paa", "external:offline-root",
    )  # fmt: skip
    pai = bulb.cas.issuer("bulb-pai")
    paa_cert = x509.load_pem_x509_certificate((paa.directory / "root.pem").read_bytes())
    dac = matter.dac_certificate(
        pai, ec.generate_private_key(ec.SECP256R1()).public_key(), "Bulb DAC", matter.VendorId(0xFFF1),
        matter.ProductId(0x8000), datetime.now(UTC),
    )  # fmt: skip
    matter.check_attestation_chain(dac, pai.certificate, paa_cert, at=datetime.now(UTC))
    assert bulb.cas.chain_pem("bulb-pai")[1] == paa_cert.public_bytes(serialization.Encoding.PEM).decode()
    assert x509.load_der_x509_crl(revocation.current_crl(bulb, "matter-paa-fff1")).issuer == paa_cert.subject
    with pytest.raises(FabGuardError) as paa_offline:
        bulb.cas.issuer("matter-paa-fff1")
    assert paa_offline.value.code == "ca_key_offline"
    assert _found(bulb.home, _root_key_forms(paa)) == []  # the PAA's key is not here either
