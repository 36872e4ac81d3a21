"""Seeding: a new instance's files, and its CA registry filled from them when it is opened."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from fabguard.domain.errors import ConfigurationError
from fabguard.service.core.config import CONFIG_NAME, InstanceConfig
from fabguard.service.core.instance import Instance
from fabguard.service.core.seeding import init_instance, seed_registry
from fabguard.store.migrate import upgrade
from fabguard.store.models import CertificateAuthority


def test_init_writes_the_configuration_certificates_and_encrypted_keys(tmp_path: Path) -> None:
    config = init_instance(tmp_path / "home", organization="Acme Devices", hostnames=("fab.example",))
    home = tmp_path / "home"
    assert InstanceConfig.from_json((home / CONFIG_NAME).read_text()) == config
    assert config.crl_base_url == "http://fab.example:8080/crl"  # plain HTTP (serve --http-port 8080)
    assert sorted(p.name for p in (home / "ca").iterdir()) == [
        "issuing.pem",
        "root.pem",
        "server-chain.pem",
        "server.pem",
        "station.pem",
    ]
    assert sorted(p.name for p in (home / "keys").iterdir()) == [
        f"{name}.key.pem" for name in ("firmware", "issuing", "ledger", "root", "server", "station")
    ]


def test_init_refuses_an_unknown_backend_and_an_existing_instance(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="unknown key backend"):
        init_instance(tmp_path, organization="Acme", key_backend="tpm")
    init_instance(tmp_path, organization="Acme")
    with pytest.raises(ConfigurationError, match="already holds"):
        init_instance(tmp_path, organization="Acme")


def test_before_seeding_the_instance_files_stand_in_and_seeding_twice_registers_each_ca_once(tmp_path: Path) -> None:
    init_instance(tmp_path, organization="Acme")
    inst = Instance.open(tmp_path, migrate=False)
    try:
        upgrade(inst.db)
        from_files = inst.cas.issuer("issuing").certificate
        seed_registry(inst.db, inst.cas, inst.keys, inst.clock)
        seed_registry(inst.db, inst.cas, inst.keys, inst.clock)
        with inst.db.read() as s:
            rows = list(s.execute(select(CertificateAuthority).order_by(CertificateAuthority.name)).scalars())
        assert [(r.name, r.role, r.state, r.key_ref) for r in rows] == [
            ("issuing", "issuing", "active", "file:issuing"),
            ("root", "root", "active", "file:root"),
            ("station", "station", "active", "file:station"),
        ]
        assert from_files.serial_number == int(str(rows[0].cert_serial), 16)
    finally:
        inst.close()
