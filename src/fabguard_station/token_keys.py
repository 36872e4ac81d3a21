"""A unit's key pair made and used inside a PKCS#11 token: the unit's secure element (or SoftHSM2 standing
for it in tests). The private key is generated in the token, sensitive and never extractable; the CSR
is signed there (the message hashed here with SHA-256, the digest signed by the token with plain
``CKM_ECDSA``, which tokens offer most widely), so the key never leaves it.

``python-pkcs11`` is an optional dependency (``pip install fabguard-station[pkcs11]``): it is imported
when a token is opened. The PIN comes from the caller and is never stored, logged or put in a message.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from cryptography.x509.oid import NameOID

from fabguard_station.errors import FixtureError


class TokenError(FixtureError):
    """The token could not do what was asked: no such module or token, a wrong PIN, a failed operation."""

    code = "pkcs11_error"


class KeyNotExtractable(FixtureError):
    code = "key_not_extractable"


@contextmanager
def token_session(module: str, token_label: str, pin: str) -> Iterator[Any]:
    """A read/write user session on the token labelled ``token_label`` of the PKCS#11 ``module``."""
    try:
        # Lazy: python-pkcs11 is the optional [pkcs11] extra; only `provision --pkcs11-module` needs it.
        import pkcs11
        from pkcs11.exceptions import NoSuchToken, PinIncorrect, PinInvalid, PinLenRange, PinLocked, PKCS11Error
    except ImportError:
        raise TokenError("python-pkcs11 is not installed: pip install 'fabguard-station[pkcs11]'") from None
    try:
        # By its resolved path, as the server's PKCS#11 backend loads it: python-pkcs11 keeps one library per
        # path string, and a second string for the same module in one process fails to initialise it.
        token = pkcs11.lib(str(Path(module).resolve())).get_token(token_label=token_label)
    except NoSuchToken:
        raise TokenError(f"no token labelled '{token_label}' in PKCS#11 module {module}") from None
    except (PKCS11Error, OSError, RuntimeError) as exc:
        raise TokenError(f"cannot load the PKCS#11 module {module}: {type(exc).__name__}") from None
    try:
        session = token.open(user_pin=pin, rw=True)
    except (PinIncorrect, PinInvalid, PinLenRange):
        raise TokenError(f"wrong PIN for token '{token_label}'") from None
    except PinLocked:
        raise TokenError(f"the user PIN of token '{token_label}' is locked") from None
    except PKCS11Error as exc:
        raise TokenError(f"cannot open a session on token '{token_label}': {type(exc).__name__}") from None
    try:
        yield session
    except PKCS11Error as exc:
        raise TokenError(f"token '{token_label}' failed: {type(exc).__name__}") from None
    finally:
        session.close()


class TokenEcKey(ec.EllipticCurvePrivateKey):
    """A P-256 key that stays in the token: it signs through the token and shows its public half, nothing more."""

    def __init__(self, private: Any, public_key: ec.EllipticCurvePublicKey, label: str, created: bool) -> None:
        self._private = private
        self._public_key = public_key
        self.label = label
        self.created = created  # made by this call (else found in the token, from an earlier attempt)

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public_key.curve

    @property
    def key_size(self) -> int:
        return self._public_key.curve.key_size

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public_key

    def sign(self, data: Any, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        """ECDSA, DER-encoded as X.509 wants it: the hash computed here, the signature in the token."""
        from pkcs11.mechanisms import Mechanism  # lazy: the optional extra, loaded by token_session already

        if not isinstance(signature_algorithm, ec.ECDSA):
            raise TypeError("a token EC key signs with ECDSA only")
        algorithm = signature_algorithm.algorithm
        if isinstance(algorithm, Prehashed):
            digest = bytes(data)
        else:
            hasher = hashes.Hash(algorithm)
            hasher.update(bytes(data))
            digest = hasher.finalize()
        raw = self._private.sign(digest, mechanism=Mechanism.ECDSA)
        half = len(raw) // 2
        return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))

    def _refuse(self, what: str) -> KeyNotExtractable:
        return KeyNotExtractable(
            f"key '{self.label}' lives in the token and is not extractable: {what} is not possible"
        )

    def private_bytes(self, *args: Any, **kwargs: Any) -> bytes:
        raise self._refuse("serializing it")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        raise self._refuse("reading its private value")

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        raise self._refuse("ECDH with it")

    def __copy__(self) -> TokenEcKey:
        return self

    def __deepcopy__(self, memo: dict[Any, Any]) -> TokenEcKey:
        return self


def unit_key(session: Any, label: str, *, create: bool = True) -> TokenEcKey:
    """The P-256 key pair labelled ``label`` in the token: the one already there (a retried step finds the
    key its first attempt made), else (``create``) a new one, made in the token, sensitive and never
    extractable."""
    from pkcs11.constants import Attribute, MechanismFlag, ObjectClass
    from pkcs11.exceptions import MultipleObjectsReturned, NoSuchKey
    from pkcs11.mechanisms import KeyType
    from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

    created = False
    try:
        private = session.get_key(object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC, label=label)
        public = session.get_key(object_class=ObjectClass.PUBLIC_KEY, key_type=KeyType.EC, label=label)
    except MultipleObjectsReturned:
        raise TokenError(f"several keys are labelled '{label}' in the token") from None
    except NoSuchKey:
        if not create:
            raise TokenError(f"no key labelled '{label}' in the token") from None
        params = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True
        )
        public, private = params.generate_keypair(
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
                Attribute.DECRYPT: False,
            },
        )
        created = True
    if private[Attribute.EXTRACTABLE] or not private[Attribute.SENSITIVE]:
        raise TokenError(f"key '{label}' in the token is extractable: a unit key must never leave its token")
    public_key = serialization.load_der_public_key(encode_ec_public_key(public))
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(public_key.curve, ec.SECP256R1):
        raise TokenError(f"key '{label}' in the token is not a P-256 key")
    return TokenEcKey(private, public_key, label, created)


def unit_csr_pem(key: ec.EllipticCurvePrivateKey, serial: str) -> str:
    """A PKCS#10 request whose subject carries only the serial, signed by ``key`` (in its token, for a
    ``TokenEcKey``), as a secure element makes it."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, serial)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


__all__ = ["KeyNotExtractable", "TokenEcKey", "TokenError", "token_session", "unit_csr_pem", "unit_key"]
