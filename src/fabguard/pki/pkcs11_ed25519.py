"""Ed25519 keys inside a PKCS#11 token (a witness's cosigner key): made there, never extractable.

Checked on Debian 12's SoftHSM2 2.6.1: ``CKM_EC_EDWARDS_KEY_PAIR_GEN`` with ``CKA_EC_PARAMS`` the
OID 1.3.101.112 (id-Ed25519) makes the pair, ``CKM_EDDSA`` signs the whole message (pure Ed25519, no
prehash) and ``cryptography`` verifies the result. Shares the token login and module lock of
:class:`~fabguard.pki.pkcs11.Pkcs11KeyBackend`.
"""

from __future__ import annotations

import secrets

from cryptography.hazmat.primitives.asymmetric import ed25519
from pkcs11.constants import Attribute, MechanismFlag, ObjectClass
from pkcs11.mechanisms import KeyType, Mechanism
from pkcs11.types import PublicKey, SignMixin

from fabguard.domain.errors import ConfigurationError
from fabguard.pki.backends import check_key_name
from fabguard.pki.pkcs11 import Pkcs11KeyBackend

__all__ = ["Pkcs11Ed25519Key", "generate_ed25519", "load_ed25519"]

_ED25519_PARAMS = bytes.fromhex("06032b6570")  # DER OID 1.3.101.112


class Pkcs11Ed25519Key:
    """An Ed25519 key that stays in the token: it signs (through the token) and shows its public half."""

    def __init__(self, backend: Pkcs11KeyBackend, label: str, public_key: ed25519.Ed25519PublicKey) -> None:
        self._backend = backend
        self._label = label
        self._public_key = public_key

    def __repr__(self) -> str:
        return f"Pkcs11Ed25519Key({self._label!r})"

    def public_key(self) -> ed25519.Ed25519PublicKey:
        return self._public_key

    def sign(self, data: bytes) -> bytes:
        # The backend's session and lock: the token is shared with its EC keys (see pkcs11.py).
        with self._backend._use(self._label) as session:
            key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC_EDWARDS, label=self._label)
            if not isinstance(key, SignMixin):
                raise ConfigurationError(f"key '{self._label}' cannot sign")
            return bytes(key.sign(data, mechanism=Mechanism.EDDSA))


def _public(obj: object, label: str) -> ed25519.Ed25519PublicKey:
    if not isinstance(obj, PublicKey):
        raise ConfigurationError(f"'{label}' is not a public key object")
    point = bytes(obj[Attribute.EC_POINT])
    if len(point) == 34 and point[:2] == b"\x04\x20":  # a DER OCTET STRING around the 32 bytes
        point = point[2:]
    if len(point) != 32:
        raise ConfigurationError(f"the token's key '{label}' is not an Ed25519 public key")
    return ed25519.Ed25519PublicKey.from_public_bytes(point)


def generate_ed25519(backend: Pkcs11KeyBackend, name: str) -> Pkcs11Ed25519Key:
    """Make an Ed25519 pair labelled ``name`` in the token: sensitive, never extractable."""
    label = check_key_name(name)
    with backend._use(label) as session:
        template = {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: label}
        if any(True for _ in session.get_objects(template)):
            raise ConfigurationError(f"a key named {label} already exists in token '{backend.token_label}'")
        params = session.create_domain_parameters(
            KeyType.EC_EDWARDS, {Attribute.EC_PARAMS: _ED25519_PARAMS}, local=True
        )
        public, _ = params.generate_keypair(
            mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
            id=secrets.token_bytes(16),
            label=label,
            store=True,
            capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
            public_template={Attribute.TOKEN: True, Attribute.PRIVATE: False, Attribute.VERIFY: True},
            private_template={
                Attribute.TOKEN: True,
                Attribute.PRIVATE: True,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.SIGN: True,
                Attribute.DERIVE: False,
            },
        )
        return Pkcs11Ed25519Key(backend, label, _public(public, label))


def load_ed25519(backend: Pkcs11KeyBackend, name: str) -> Pkcs11Ed25519Key:
    label = check_key_name(name)
    with backend._use(label) as session:
        public = session.get_key(object_class=ObjectClass.PUBLIC_KEY, key_type=KeyType.EC_EDWARDS, label=label)
        return Pkcs11Ed25519Key(backend, label, _public(public, label))
