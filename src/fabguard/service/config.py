"""An instance's configuration: ``instance.json`` in its home directory, and where that home is."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fabguard.pki.keystore import KeyStore
from fabguard.service.settings import Limits

HOME_ENV = "FABGUARD_HOME"
DATABASE_ENV = "FABGUARD_DATABASE_URL"
CONFIG_NAME = "instance.json"


def default_home(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get(HOME_ENV):
        return Path(env[HOME_ENV]).expanduser()
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "fabguard"


@dataclass(frozen=True)
class InstanceConfig:
    organization: str
    hostnames: tuple[str, ...]
    database_url: str | None
    limits: Limits = field(default_factory=Limits)
    crl_base_url: str = ""
    key_backend: str = "file"
    pkcs11_module: str | None = None
    pkcs11_token: str | None = None
    # Token labels are "<prefix>-<name>" (KeyStore.label), so several instances can share one HSM token.
    key_prefix: str = "fabguard"

    def __post_init__(self) -> None:
        if not self.crl_base_url:
            object.__setattr__(self, "crl_base_url", f"https://{self.hostnames[0]}:8443/crl")

    def to_json(self) -> str:
        return json.dumps(
            {
                "organization": self.organization,
                "hostnames": list(self.hostnames),
                "database_url": self.database_url,
                "crl_base_url": self.crl_base_url,
                "key_backend": self.key_backend,
                "pkcs11_module": self.pkcs11_module,
                "pkcs11_token": self.pkcs11_token,
                "key_prefix": self.key_prefix,
                "limits": self.limits.to_dict(),
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> InstanceConfig:
        data = json.loads(text)
        return cls(
            organization=data["organization"],
            hostnames=tuple(data["hostnames"]),
            database_url=data.get("database_url"),
            limits=Limits.from_dict(data.get("limits", {})),
            crl_base_url=data.get("crl_base_url", ""),
            key_backend=data.get("key_backend", "file"),
            pkcs11_module=data.get("pkcs11_module"),
            pkcs11_token=data.get("pkcs11_token"),
            key_prefix=data.get("key_prefix", "fabguard"),
        )

    def key_store(self, home: Path, env: Mapping[str, str] | None = None) -> KeyStore:
        """The key store this configuration names, over ``home``'s ``keys/`` directory."""
        return KeyStore(
            home / "keys",
            backend=self.key_backend,
            pkcs11_module=self.pkcs11_module,
            pkcs11_token=self.pkcs11_token,
            label_prefix=self.key_prefix,
            env=env,
        )
