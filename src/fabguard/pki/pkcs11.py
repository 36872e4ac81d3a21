"""CA keys inside a PKCS#11 token (an HSM, or SoftHSM2 for tests): generated there, never extractable.

A key loaded from the token is a ``cryptography`` EC private key whose ``sign`` asks the token, so the
ordinary certificate and CRL builders sign with it unchanged. The message is hashed in software and
the token signs the digest with plain ``CKM_ECDSA``, the ECDSA mechanism tokens offer most widely
(Debian's SoftHSM2 refuses ``CKM_ECDSA_SHA256``).

The user PIN comes from the caller and is never stored, logged or put in an error message.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pkcs11
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from cryptography.utils import Buffer
from pkcs11.constants import Attribute, MechanismFlag, ObjectClass
from pkcs11.exceptions import (
    MultipleObjectsReturned,
    MultipleTokensReturned,
    NoSuchKey,
    NoSuchToken,
    PinIncorrect,
    PinInvalid,
    PinLenRange,
    PinLocked,
    PKCS11Error,
    UserAlreadyLoggedIn,
)
from pkcs11.mechanisms import KeyType, Mechanism
from pkcs11.types import Key, PublicKey, Session, SignMixin, Token
from pkcs11.util.ec import encode_named_curve_parameters

from fabguard.domain.errors import ConfigurationError, FabGuardError
from fabguard.pki.backends import KeyNotFound, check_key_name

__all__ = ["KeyNotExtractable", "Pkcs11EcPrivateKey", "Pkcs11KeyBackend"]

# DER ECParameters (a named curve OID) as tokens store them in CKA_EC_PARAMS.
_CURVES: dict[bytes, ec.EllipticCurve] = {
    encode_named_curve_parameters("secp256r1"): ec.SECP256R1(),
    encode_named_curve_parameters("secp384r1"): ec.SECP384R1(),
    encode_named_curve_parameters("secp521r1"): ec.SECP521R1(),
}
_P256_PARAMS = encode_named_curve_parameters("secp256r1")


class KeyNotExtractable(FabGuardError):
    """Something asked for the private half of a key that lives in the HSM."""

    code = "key_not_extractable"
    status = 500


# python-pkcs11 initialises a module with C_Initialize(NULL): a promise never to call it from two
# threads at once. SoftHSM2 then runs without its own locks (two threads signing at once fail with
# CKR_GENERAL_ERROR, even on separate sessions), so every call into a module holds that module's lock.
#
# Logins belong to the whole process, not to a session: C_Login on a token that is already logged in
# answers "already logged in" without looking at the PIN. So the first backend to open a token logs
# in and keeps a keyed digest of the PIN, which later backends on that token must match.
_PIN_DIGEST_KEY = secrets.token_bytes(32)


@dataclass
class _Login:
    session: Session  # the session whose C_Login holds the process's login; closing it logs out
    pin_digest: bytes
    users: int = 0


@dataclass
class _Module:
    lock: threading.RLock = field(default_factory=threading.RLock)
    logins: dict[str, _Login] = field(default_factory=dict)  # token label -> the process's login


_MODULES: dict[str, _Module] = {}
_MODULES_LOCK = threading.Lock()


def _module(path: str) -> _Module:
    with _MODULES_LOCK:
        return _MODULES.setdefault(path, _Module())


class Pkcs11KeyBackend:
    """P-256 CA keys in one token of a PKCS#11 module, found by label.

    Safe to share between threads; signatures from several threads take turns on the module (see
    above), which costs little since a signature is a fraction of the work of issuing a certificate.
    """

    def __init__(self, module: str, token_label: str, pin: bytes) -> None:
        self.module = module
        self.token_label = token_label
        if not Path(module).is_file():
            raise ConfigurationError(f"PKCS#11 module {module} does not exist")
        # One path per module file: python-pkcs11 would load it a second time under a second name.
        self._path = str(Path(module).resolve())
        self._module = _module(self._path)
        self._keys: dict[str, SignMixin] = {}  # label -> handle in self._session
        with self._module.lock:
            self._token = _open_token(self._path, token_label)
            _log_in(self._module, self._token, pin)
            try:
                # Opened after the login, the session shares it: no PIN, and closing it does not log out.
                # Read/write in the R/W user state, so it may also create token objects.
                self._session: Session | None = self._token.open(rw=True)
            except PKCS11Error as exc:
                _log_out(self._module, token_label)
                raise ConfigurationError(
                    f"cannot open a session on token '{token_label}': {type(exc).__name__}"
                ) from None

    def __repr__(self) -> str:
        return f"Pkcs11KeyBackend({self.module!r}, {self.token_label!r})"

    def __enter__(self) -> Pkcs11KeyBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close this backend's session; the last backend open on the token logs the process out."""
        with self._module.lock:
            if self._session is None:
                return
            session, self._session = self._session, None
            self._keys.clear()
            with suppress(PKCS11Error):
                session.close()
            _log_out(self._module, self.token_label)

    def describe(self) -> str:
        return f"PKCS#11 token '{self.token_label}' ({self._token.manufacturer_id.strip()}) via {self.module}"

    def exists(self, name: str) -> bool:
        label = check_key_name(name)
        with self._use(label) as session:
            return any(True for _ in session.get_objects(_key_template(ObjectClass.PRIVATE_KEY, label)))

    def generate(self, name: str) -> ec.EllipticCurvePrivateKey:
        """Make a P-256 key pair in the token, labelled ``name``: sensitive, never extractable."""
        label = check_key_name(name)
        with self._use(label) as session:
            if any(True for _ in session.get_objects(_key_template(ObjectClass.PRIVATE_KEY, label))):
                raise ConfigurationError(f"a key named {label} already exists in token '{self.token_label}'")
            params = session.create_domain_parameters(KeyType.EC, {Attribute.EC_PARAMS: _P256_PARAMS}, local=True)
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
            public_key = _public_key(public, label)
            if isinstance(private, SignMixin):
                self._keys[label] = private
        return Pkcs11EcPrivateKey(self, label, public_key)

    def load(self, name: str) -> ec.EllipticCurvePrivateKey:
        label = check_key_name(name)
        with self._use(label) as session:
            public = session.get_key(object_class=ObjectClass.PUBLIC_KEY, key_type=KeyType.EC, label=label)
            public_key = _public_key(public, label)
            self._keys[label] = _signing_key(session, label)
        return Pkcs11EcPrivateKey(self, label, public_key)

    def destroy(self, name: str) -> None:
        """Delete the key pair labelled ``name`` from the token (nothing if there is none)."""
        label = check_key_name(name)
        with self._use(label) as session:
            for object_class in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
                for obj in list(session.get_objects(_key_template(object_class, label))):
                    obj.destroy()
            self._keys.pop(label, None)

    def sign_digest(self, label: str, digest: bytes) -> bytes:
        """The token's raw ECDSA signature (``r || s``) of ``digest`` with the key ``label``."""
        with self._use(label) as session:
            key = self._keys.get(label)
            if key is None:
                key = self._keys[label] = _signing_key(session, label)
            return key.sign(digest, mechanism=Mechanism.ECDSA)

    @contextmanager
    def _use(self, label: str) -> Iterator[Session]:
        """This backend's session, alone on the module; the token's errors become FabGuard's (never naming the PIN)."""
        with self._module.lock:
            if self._session is None:
                raise ConfigurationError(f"the PKCS#11 backend for token '{self.token_label}' is closed")
            try:
                yield self._session
            except NoSuchKey:
                raise KeyNotFound(f"no key '{label}' in token '{self.token_label}'") from None
            except MultipleObjectsReturned:
                raise ConfigurationError(f"several keys are labelled '{label}' in token '{self.token_label}'") from None
            except PKCS11Error as exc:
                # A handle may have gone stale (key deleted, token re-inserted): look keys up afresh next time.
                self._keys.pop(label, None)
                raise ConfigurationError(
                    f"token '{self.token_label}' failed with key '{label}': {type(exc).__name__} {exc}".rstrip()
                ) from None


class Pkcs11EcPrivateKey(ec.EllipticCurvePrivateKey):
    """An EC key that stays in the token: it signs (through the token) and shows its public half, nothing more."""

    def __init__(self, backend: Pkcs11KeyBackend, label: str, public_key: ec.EllipticCurvePublicKey) -> None:
        self._backend = backend
        self.label = label
        self._public_key = public_key

    def __repr__(self) -> str:
        return f"<Pkcs11EcPrivateKey {self.label!r} in token {self._backend.token_label!r}>"

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public_key.curve

    @property
    def key_size(self) -> int:
        return self._public_key.curve.key_size

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public_key

    def sign(self, data: Buffer, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        """ECDSA, DER-encoded as X.509 wants it; the hash is computed here, the signature in the token."""
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise TypeError("an HSM EC key signs with ECDSA only")
        if signature_algorithm.deterministic_signing:
            raise ValueError("the token does not offer deterministic (RFC 6979) ECDSA")
        algorithm = signature_algorithm.algorithm
        if isinstance(algorithm, Prehashed):
            digest = bytes(data)
            if len(digest) != algorithm.digest_size:
                raise ValueError(f"a prehashed digest for this algorithm is {algorithm.digest_size} bytes")
        else:
            hasher = hashes.Hash(algorithm)
            hasher.update(data)
            digest = hasher.finalize()
        raw = self._backend.sign_digest(self.label, digest)
        half = len(raw) // 2
        return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))

    def _refuse(self, what: str) -> KeyNotExtractable:
        return KeyNotExtractable(
            f"key '{self.label}' lives in PKCS#11 token '{self._backend.token_label}' and is not extractable: "
            f"{what} is not possible"
        )

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        raise self._refuse("serializing it")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        raise self._refuse("reading its private value")

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        raise self._refuse("ECDH with it")

    def __copy__(self) -> Pkcs11EcPrivateKey:
        return self

    def __deepcopy__(self, memo: dict[Any, Any]) -> Pkcs11EcPrivateKey:
        return self


def _key_template(object_class: ObjectClass, label: str) -> dict[Attribute, Any]:
    return {Attribute.CLASS: object_class, Attribute.KEY_TYPE: KeyType.EC, Attribute.LABEL: label}


def _open_token(module: str, token_label: str) -> Token:
    try:
        library = pkcs11.lib(module)
    except PKCS11Error as exc:
        raise ConfigurationError(f"cannot load the PKCS#11 module {module}: {exc}") from None
    try:
        return library.get_token(token_label=token_label)
    except NoSuchToken:
        raise ConfigurationError(f"no token labelled '{token_label}' in PKCS#11 module {module}") from None
    except MultipleTokensReturned:
        raise ConfigurationError(f"several tokens are labelled '{token_label}' in {module}") from None
    except PKCS11Error as exc:
        raise ConfigurationError(f"cannot list the tokens of {module}: {type(exc).__name__}") from None


def _log_in(module: _Module, token: Token, pin: bytes) -> None:
    """Log the process in to ``token`` once; later callers must present the same PIN. Holds the module lock."""
    wrong = ConfigurationError(f"wrong PIN for token '{token.label}'")
    try:
        pin_text = pin.decode("utf-8")
    except UnicodeDecodeError:
        raise wrong from None
    digest = hmac.new(_PIN_DIGEST_KEY, pin, hashlib.sha256).digest()
    login = module.logins.get(token.label)
    if login is None:
        try:
            session = token.open(user_pin=pin_text)
        except (PinIncorrect, PinInvalid, PinLenRange):
            raise wrong from None
        except PinLocked:
            raise ConfigurationError(f"the user PIN of token '{token.label}' is locked") from None
        except UserAlreadyLoggedIn:
            raise ConfigurationError(
                f"token '{token.label}' is already logged in by other code in this process, "
                "so FabGuard cannot check the PIN"
            ) from None
        except PKCS11Error as exc:
            raise ConfigurationError(f"cannot log in to token '{token.label}': {type(exc).__name__}") from None
        login = module.logins[token.label] = _Login(session, digest)
    elif not hmac.compare_digest(login.pin_digest, digest):
        raise wrong
    login.users += 1


def _log_out(module: _Module, token_label: str) -> None:
    """One user fewer of the process's login to the token; the last one logs out. Holds the module lock."""
    login = module.logins[token_label]
    login.users -= 1
    if login.users == 0:
        del module.logins[token_label]
        with suppress(PKCS11Error):
            login.session.close()


def _signing_key(session: Session, label: str) -> SignMixin:
    key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC, label=label)
    if not isinstance(key, SignMixin):
        raise ConfigurationError(f"key '{label}' cannot sign")
    return key


def _public_key(obj: Key, label: str) -> ec.EllipticCurvePublicKey:
    """The cryptography public key of a token EC public key object (CKA_EC_PARAMS, CKA_EC_POINT)."""
    if not isinstance(obj, PublicKey):
        raise ConfigurationError(f"'{label}' is not a public key object")
    params = bytes(obj[Attribute.EC_PARAMS])
    curve = _CURVES.get(params)
    if curve is None:
        raise ConfigurationError(f"key '{label}' is on a curve FabGuard does not sign with")
    point = _ec_point(bytes(obj[Attribute.EC_POINT]), curve)
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
    except ValueError:
        raise ConfigurationError(f"the token's public key '{label}' is not a valid point") from None


def _ec_point(value: bytes, curve: ec.EllipticCurve) -> bytes:
    """The uncompressed point from CKA_EC_POINT: a DER OCTET STRING, or the bare point some tokens store."""
    size = 1 + 2 * ((curve.key_size + 7) // 8)
    if len(value) == size:
        return value
    if len(value) >= 2 and value[0] == 0x04:
        length, start = value[1], 2
        if length & 0x80:  # long form: the next (length & 0x7F) bytes hold the length
            count = length & 0x7F
            length, start = int.from_bytes(value[2 : 2 + count], "big"), 2 + count
        if length == size and len(value) == start + length:
            return value[start:]
    raise ConfigurationError("the token's CKA_EC_POINT is neither a DER OCTET STRING nor an uncompressed point")
