"""The HTTPS listener's key in an HSM: OpenSSL's ``pkcs11`` engine holds it, and a TLS context signs with it.

Python's ``ssl`` module takes a server key only from a file. OpenSSL 3's way to reach a PKCS#11 key through
a file is the pkcs11-provider, which Debian 12 does not package; what it packages is the older pkcs11
*engine* (libengine-pkcs11-openssl, OpenSSL's ENGINE API, deprecated in OpenSSL 3 but present in 3.0-3.5).
This module loads the key through that engine and hands it to the ``ssl.SSLContext``'s own ``SSL_CTX``
with ctypes (``SSL_CTX_use_certificate_chain_file``, ``SSL_CTX_use_PrivateKey``,
``SSL_CTX_check_private_key``). That reaches into CPython: the ``SSL_CTX *`` is the first field after the
object header of ``_ssl._SSLContext`` (so it has been since Python 3.0), and it must belong to the same
libssl that ctypes loads. Both are checked before anything is written (the process's mappings hold
``libssl.so.3``; the pointer reads back the verify mode and options Python set), and a process where
either fails is refused with a configuration error rather than risking memory that is not an SSL_CTX.

Each handshake then signs in the HSM on the event loop's thread: a slow network HSM slows every handshake.
"""

from __future__ import annotations

import ctypes
import ssl
from pathlib import Path
from typing import Any

from fabguard.domain.errors import ConfigurationError, InvalidRequest
from fabguard.pki.server_tls import MISMATCH, UNREADABLE

ENGINE_ID = b"pkcs11"
ENGINE_PACKAGE = "libengine-pkcs11-openssl"
_VERIFY = {ssl.CERT_NONE: 0, ssl.CERT_OPTIONAL: 1, ssl.CERT_REQUIRED: 3}  # SSL_VERIFY_PEER | FAIL_IF_NO_PEER_CERT


def _libraries() -> tuple[ctypes.CDLL, ctypes.CDLL]:
    """libcrypto and libssl, if they are the ones Python's ssl module runs on."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        maps = ""
    if "libssl.so.3" not in maps:
        raise ConfigurationError(
            "a PKCS#11 server key needs Python's ssl module linked to the system's OpenSSL 3 (libssl.so.3); "
            f"this Python ({ssl.OPENSSL_VERSION}) is not"
        )
    crypto, libssl = ctypes.CDLL("libcrypto.so.3"), ctypes.CDLL("libssl.so.3")
    crypto.OpenSSL_version.restype = ctypes.c_char_p
    crypto.OpenSSL_version.argtypes = [ctypes.c_int]
    if crypto.OpenSSL_version(0).decode() != ssl.OPENSSL_VERSION:
        raise ConfigurationError(f"Python's ssl runs on {ssl.OPENSSL_VERSION}, not the libssl.so.3 found")
    signatures: list[tuple[str, Any, list[Any]]] = [
        ("ENGINE_by_id", ctypes.c_void_p, [ctypes.c_char_p]),
        ("ENGINE_ctrl_cmd_string", ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]),
        ("ENGINE_init", ctypes.c_int, [ctypes.c_void_p]),
        ("ENGINE_finish", ctypes.c_int, [ctypes.c_void_p]),
        ("ENGINE_free", ctypes.c_int, [ctypes.c_void_p]),
        (
            "ENGINE_load_private_key",
            ctypes.c_void_p,
            [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p],
        ),
        ("EVP_PKEY_free", None, [ctypes.c_void_p]),
        ("ERR_clear_error", None, []),
    ]
    for name, res, args in signatures:
        fn = getattr(crypto, name)
        fn.restype, fn.argtypes = res, args
    signatures = [
        ("SSL_CTX_use_certificate_chain_file", ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p]),
        ("SSL_CTX_use_PrivateKey", ctypes.c_int, [ctypes.c_void_p, ctypes.c_void_p]),
        ("SSL_CTX_check_private_key", ctypes.c_int, [ctypes.c_void_p]),
        ("SSL_CTX_get_verify_mode", ctypes.c_int, [ctypes.c_void_p]),
        ("SSL_CTX_get_options", ctypes.c_uint64, [ctypes.c_void_p]),
    ]
    for name, res, args in signatures:
        fn = getattr(libssl, name)
        fn.restype, fn.argtypes = res, args
    return crypto, libssl


def _ssl_ctx(ctx: ssl.SSLContext, libssl: ctypes.CDLL) -> int:
    """The ``SSL_CTX *`` of ``ctx``, read back through OpenSSL before it is trusted."""
    address = id(ctx) + ctypes.sizeof(ctypes.c_ssize_t) + ctypes.sizeof(ctypes.c_void_p)  # after PyObject_HEAD
    pointer = ctypes.c_void_p.from_address(address).value
    if not pointer:
        raise ConfigurationError("this Python's SSLContext does not hold its SSL_CTX where expected")
    mode = ctx.verify_mode
    try:
        for probe in (ssl.CERT_REQUIRED, ssl.CERT_NONE):
            ctx.verify_mode = probe
            if libssl.SSL_CTX_get_verify_mode(pointer) != _VERIFY[probe]:
                raise ConfigurationError("this Python's SSLContext does not hold its SSL_CTX where expected")
    finally:
        ctx.verify_mode = mode
    if libssl.SSL_CTX_get_options(pointer) != int(ctx.options):
        raise ConfigurationError("this Python's SSLContext does not hold its SSL_CTX where expected")
    return int(pointer)


def load_pkcs11_key(ctx: ssl.SSLContext, chain: Path, uri: str, module: str, pin: bytes) -> None:
    """Make ``ctx`` serve ``chain`` (PEM, leaf first) with the HSM key at PKCS#11 ``uri`` through ``module``."""
    crypto, libssl = _libraries()
    pointer = _ssl_ctx(ctx, libssl)
    engine = crypto.ENGINE_by_id(ENGINE_ID)
    if not engine:
        crypto.ERR_clear_error()
        raise ConfigurationError(f"OpenSSL's pkcs11 engine is not installed (apt-get install {ENGINE_PACKAGE})")
    try:
        ok = crypto.ENGINE_ctrl_cmd_string(engine, b"MODULE_PATH", module.encode(), 0) == 1
        ok = ok and crypto.ENGINE_ctrl_cmd_string(engine, b"PIN", pin, 0) == 1 and crypto.ENGINE_init(engine) == 1
        if not ok:
            raise InvalidRequest(f"the PKCS#11 module {module} does not load or the PIN is refused", code=UNREADABLE)
        try:
            _use(crypto, libssl, pointer, engine, chain, uri)
        finally:
            crypto.ENGINE_finish(engine)
    finally:
        crypto.ENGINE_free(engine)
        crypto.ERR_clear_error()  # leave nothing on this thread's error queue for Python's ssl to trip over


def _use(crypto: ctypes.CDLL, libssl: ctypes.CDLL, pointer: int, engine: int, chain: Path, uri: str) -> None:
    if libssl.SSL_CTX_use_certificate_chain_file(pointer, str(chain).encode()) != 1:
        raise InvalidRequest(f"{chain} holds no readable PEM certificate chain", code=UNREADABLE)
    key = crypto.ENGINE_load_private_key(engine, uri.encode(), None, None)
    if not key:
        raise InvalidRequest(f"no private key at {uri} (token, object or id?)", code=UNREADABLE)
    try:
        if libssl.SSL_CTX_use_PrivateKey(pointer, key) != 1 or libssl.SSL_CTX_check_private_key(pointer) != 1:
            raise InvalidRequest(f"the certificate in {chain} does not match the key at {uri}", code=MISMATCH)
    finally:
        crypto.EVP_PKEY_free(key)
