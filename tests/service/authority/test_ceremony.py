"""An offline root (issue 25, item 1): the instance makes every key but the root's, a ceremony (its own
directory, standing for the air-gapped machine) signs the CSRs and the root's CRL, the instance imports
them. Real keys, real SQLite and PostgreSQL, a real server; OpenSSL verifies the chains and the CRLs."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fabguard.domain.errors import FabGuardError
from fabguard.domain.values import CaName
from fabguard.pki import ceremony, ceremony_root
from fabguard.service.authority import authorities
from fabguard.service.authority import ceremony as instance_side
from fabguard.service.authority import revocation
from fabguard.service.authority.ca_acts import CaRevocation
from fabguard.service.approvals import requests
from fabguard.service.core.instance import Instance
from fabguard.service.core.seeding import init_instance
from fabguard.service.operations import backup as backups
from fabguard.store.backups import pg_tool
from tests.support import PASSPHRASE, REQUESTER, World, second_person_approves, tested_device

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


def new_ceremony(directory: Path, **kw: object) -> Ceremony:
    ceremony_root.create_root(
        directory, organization=ORG, common_name=f"{ORG} FabGuard Root CA", now=datetime.now(UTC), **kw  # type: ignore[arg-type]
    )
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
    for fname, fmt in (("PKCS8", serialization.PrivateFormat.PKCS8), ("SEC1", serialization.PrivateFormat.TraditionalOpenSSL)):
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
